"""Input parsing: every bad input gets its error code and a message naming the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchscraper.exceptions import (
    BatchInputError,
    InvalidOptionError,
    InvalidSchemaError,
    InvalidURLsError,
    TooLargeError,
)
from batchscraper.inputs import Limits, parse_batch, parse_options, parse_urls
from batchscraper.inputs.schemas import SchemaLimits, parse_schema

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}}
FILES = Limits(read_files=True)  # as the command line parses


def test_at_files_are_not_read_unless_allowed(tmp_path: Path):
    """Over HTTP, "@/etc/passwd" must be an error, never a file read."""
    secret = tmp_path / "secret.txt"
    secret.write_text("https://a.example/from-a-file\n")
    for call in (
        lambda: parse_urls(f"@{secret}"),
        lambda: parse_batch("https://a.example/", f"@{secret}"),
        lambda: parse_options(f"@{secret}"),
    ):
        with pytest.raises(BatchInputError, match="command line only") as info:
            call()
        assert "from-a-file" not in str(info.value) and info.value.details is None


def test_url_forms(tmp_path: Path):
    assert [u.url for u in parse_urls("https://a.example/1,https://a.example/2")] == [
        "https://a.example/1",
        "https://a.example/2",
    ]
    assert len(parse_urls("https://a.example/1?x=1,2\nhttps://a.example/2")) == 2
    objects = parse_urls(
        json.dumps(
            [
                "https://a.example/1",
                {
                    "url": "https://a.example/2",
                    "render_js": "always",
                    "wait_for": "#x",
                    "headers": {"X-A": "1"},
                },
                {"url": "https://a.example/3", "mode": "js"},
            ]
        )
    )
    assert objects[1].render_js == "always" and objects[1].headers == {"X-A": "1"}
    assert objects[2].render_js == "always"
    (tmp_path / "u.txt").write_text("# comment\nhttps://a.example/1\n\nhttps://a.example/2\n")
    (tmp_path / "u.json").write_text(json.dumps(["https://a.example/1"]))
    (tmp_path / "u.jsonl").write_text('"https://a.example/1"\n{"url": "https://a.example/2"}\n')
    (tmp_path / "u.csv").write_text("id,url\n1,https://a.example/1\n2,https://a.example/2\n")
    for name, count in (("u.txt", 2), ("u.json", 1), ("u.jsonl", 2), ("u.csv", 2)):
        assert len(parse_urls(f"@{tmp_path / name}", FILES)) == count, name


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("ftp://a.example/x", "only http and https"),
        ("https://user:pw@a.example/", "credentials"),
        ("not a url", "whitespace"),
        ("https://a.example/\x00x", "control characters"),
        ("https:///nohost", "no host"),
        ("https://a.example:99999/", "malformed"),
        ("https://a.example/" + "x" * 3000, "longer than"),
    ],
)
def test_invalid_urls_are_reported_by_index(raw: str, reason: str):
    with pytest.raises(InvalidURLsError) as info:
        parse_urls(json.dumps(["https://ok.example/", raw]))
    assert info.value.code == "INVALID_URL"
    assert info.value.details[0]["index"] == 1
    assert reason in info.value.details[0]["reason"]


def test_url_list_errors(tmp_path: Path):
    with pytest.raises(InvalidURLsError):
        parse_urls("[]")
    with pytest.raises(BatchInputError, match="not valid JSON"):
        parse_urls("[oops")
    with pytest.raises(BatchInputError, match="cannot read"):
        parse_urls(f"@{tmp_path / 'missing.txt'}", FILES)
    (tmp_path / "bad.csv").write_text("link\nhttps://a.example/\n")
    with pytest.raises(BatchInputError, match="no 'url' column"):
        parse_urls(f"@{tmp_path / 'bad.csv'}", FILES)
    with pytest.raises(InvalidURLsError, match="unknown keys"):
        parse_urls([{"url": "https://a.example/", "cookie_jar": "x"}])
    with pytest.raises(TooLargeError) as info:
        parse_urls(["https://a.example/"] * 3, Limits(max_urls=2))
    assert info.value.http_status == 413


def test_field_list_becomes_json_schema():
    schema = parse_schema(
        [
            {"field": "title", "type": "string", "required": True},
            {"field": "price", "type": "float", "example": 9.99},
            {"field": "published", "type": "date"},
            {"field": "tags", "type": "array", "items": "string"},
            {
                "field": "offer",
                "type": "object",
                "fields": [{"field": "currency", "type": "string"}],
            },
            {"field": "variants", "type": "array", "items": [{"field": "sku", "type": "string"}]},
        ]
    )
    props = schema["properties"]
    assert schema["required"] == ["title"]
    assert props["price"] == {"type": "number", "examples": [9.99]}
    assert props["published"] == {"type": "string", "format": "date"}
    assert props["tags"]["items"] == {"type": "string"}
    assert props["offer"]["properties"]["currency"] == {"type": "string"}
    assert props["variants"]["items"]["properties"]["sku"] == {"type": "string"}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("{oops", "not valid JSON"),
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "not a valid JSON Schema"),
        ({"type": "string"}, "must describe an object"),
        (
            {"type": "object", "properties": {"a": {"$ref": "https://evil.example/s.json"}}},
            "remote $ref",
        ),
        ({"type": "object", "properties": {"a": {"$ref": "#"}}}, "refers to itself"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/nothing"}}}, "points at nothing"),
        ([], "field list is empty"),
        ([{"field": "a", "type": "money"}], "unknown type"),
        ([{"field": "a"}, {"field": "a"}], "appears twice"),
        ([{"type": "string"}], "non-empty 'field'"),
        (42, "must be a JSON Schema object"),
    ],
)
def test_invalid_schemas(schema, message):
    with pytest.raises(InvalidSchemaError, match=message.replace("$", r"\$")) as info:
        parse_schema(schema)
    assert info.value.http_status == 422


def test_schema_size_and_depth_limits():
    deep: dict = {"type": "string"}
    for _ in range(20):
        deep = {"type": "object", "properties": {"x": deep}}
    with pytest.raises(InvalidSchemaError, match="nests deeper"):
        parse_schema(deep)
    wide = {"type": "object", "properties": {f"f{i}": {"type": "string"} for i in range(2000)}}
    with pytest.raises(InvalidSchemaError, match="bytes"):
        parse_schema(wide, SchemaLimits(max_bytes=10_000))


def test_options_defaults_ranges_and_single_arguments(tmp_path: Path):
    options = parse_options(None)
    assert (options.concurrency, options.retries, options.timeout_per_url) == (8, 2, 30.0)
    assert options.render_js == "auto" and options.formats == ("json",)
    options = parse_options(
        '{"concurrency": 16}', concurrency="4", fail_fast="true", formats="json,markdown"
    )
    assert options.concurrency == 4 and options.fail_fast is True
    assert options.formats == ("json", "markdown")
    (tmp_path / "o.json").write_text('{"date_filter": {"field": "d", "from": "2024-01-01"}}')
    assert parse_options(f"@{tmp_path / 'o.json'}", FILES).date_filter.field == "d"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency: must be between 1 and 64"),
        ({"concurrency": 65}, "between 1 and 64"),
        ({"concurrency": "lots"}, "must be an integer"),
        ({"max_items_per_url": 501}, "between 1 and 500"),
        ({"max_total_items": 5001}, "between 1 and 5000"),
        ({"parallel_jobs": 11}, "between 1 and 10"),
        ({"timeout_per_url": 0.5}, "between 1 and 300"),
        ({"retries": 6}, "between 0 and 5"),
        ({"render_js": "sometimes"}, "render_js"),
        ({"fail_fast": "maybe"}, "true or false"),
        ({"formats": ["pdf"]}, "formats: unknown"),
        ({"date_filter": {"field": "d"}}, "give 'from'"),
        ({"date_filter": {"field": "d", "from": "soon"}}, "not an ISO date"),
        ({"colour": "blue"}, "unknown"),
        ({"concurrency": True}, "must be an integer"),
        ({"max_llm_calls": -1}, "max_llm_calls: must be between 0"),
        ({"max_llm_calls": "many"}, "must be an integer"),
        ({"max_cost_usd": "lots"}, "max_cost_usd: must be a number"),
        ({"grounding": "loose"}, "grounding: must be one of"),
    ],
)
def test_invalid_options(options, message):
    with pytest.raises(InvalidOptionError, match=message):
        parse_options(options)


def test_llm_options():
    options = parse_options({"max_llm_calls": 10, "max_cost_usd": "0.5", "grounding": "strict"})
    assert (options.max_llm_calls, options.max_cost_usd, options.grounding) == (10, 0.5, "strict")
    defaults = parse_options(None)
    assert (defaults.max_llm_calls, defaults.max_cost_usd, defaults.grounding) == (
        None, None, "auto")
    assert parse_options({"max_llm_calls": None}).max_llm_calls is None
    assert parse_options(max_llm_calls="0").max_llm_calls == 0


def test_profile_schemas():
    assert parse_schema("profile:product")["title"] == "Product"
    assert "ingredients" in parse_schema("profile:recipe")["required"]
    with pytest.raises(InvalidSchemaError, match="unknown profile 'shoe'"):
        parse_schema("profile:shoe")


def test_max_total_items_limit_follows_setting():
    assert (
        parse_options({"max_total_items": 9000}, Limits(max_total_items=10_000)).max_total_items
        == 9000
    )


def test_parse_batch_requires_urls():
    # a missing argument is malformed input, as the README's table says (not a bad URL)
    with pytest.raises(BatchInputError, match="urls: missing") as info:
        parse_batch(None, SCHEMA)
    assert info.value.code == "INVALID_INPUT" and info.value.http_status == 400
    assert parse_batch("https://a.example/", None).schema is None  # a content-only batch
    with pytest.raises(BatchInputError, match="prompt"):
        parse_batch("https://a.example/", SCHEMA, prompt="x" * 5000)
    spec = parse_batch("https://a.example/", json.dumps(SCHEMA), prompt="titles only")
    assert spec.prompt == "titles only" and spec.schema == SCHEMA


def test_browser_options_per_url():
    (spec,) = parse_urls(
        [
            {
                "url": "https://a.example/",
                "render_js": "always",
                "screenshot": True,
                "actions": [{"type": "click", "selector": "#more"}, {"type": "wait", "ms": 200}],
                "cookies": {"session": "abc"},
                "user_agent": "UA/1",
                "viewport": {"width": 800, "height": 600},
            }
        ]
    )
    assert spec.browser == {
        "actions": [{"type": "click", "selector": "#more"}, {"type": "wait", "ms": 200}],
        "screenshot": True,
        "cookies": {"session": "abc"},
        "user_agent": "UA/1",
        "viewport": {"width": 800, "height": 600},
    }


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"actions": [{"type": "hover"}]}, "actions[0].type must be one of"),
        ({"actions": [{"type": "click"}]}, "actions[0] (click) needs ['selector']"),
        ({"actions": [{"type": "wait", "ms": 999999}]}, "actions[0].ms must be between"),
        ({"actions": "click"}, "actions must be a list"),
        ({"screenshot": "yes"}, "screenshot must be true or false"),
        ({"cookies": ["a"]}, "cookies must be an object"),
        ({"viewport": {"width": 5}}, "viewport must be"),
    ],
)
def test_invalid_browser_options(entry, reason):
    with pytest.raises(InvalidURLsError) as info:
        parse_urls([{"url": "https://a.example/", **entry}])
    assert reason in info.value.details[0]["reason"]


def test_every_problem_is_reported_at_once():
    with pytest.raises(InvalidURLsError) as info:
        parse_batch(
            ["nope", "https://a.example/", "ftp://b.example/", "http://"], SCHEMA,
            options={"concurrency": 100, "retries": 9, "colour": "blue"},
        )
    error = info.value
    assert error.code == "INVALID_URL" and error.http_status == 422
    assert [(d["field"], d.get("index"), d.get("option")) for d in error.details] == [
        ("urls", 0, None), ("urls", 2, None), ("urls", 3, None),
        ("options", None, "colour"), ("options", None, "concurrency"),
        ("options", None, "retries"),
    ]
    assert [d["code"] for d in error.details] == ["INVALID_URL"] * 3 + ["INVALID_OPTION"] * 3
    for shown in ("index 0 ('nope')", "index 2", "index 3", "unknown ['colour']",
                  "concurrency: must be between 1 and 64", "retries: must be between 0 and 5"):
        assert shown in error.message, shown


def test_all_option_problems_and_the_schema_together():
    with pytest.raises(InvalidSchemaError) as info:
        parse_batch("https://a.example/", {"type": "object", "properties": {"a": {"type": "x"}}},
                    prompt="x" * 5000, concurrency="0", retries="9")
    fields = [(d["field"], d["code"]) for d in info.value.details]
    assert fields == [("schema", "INVALID_SCHEMA"), ("prompt", "INVALID_INPUT"),
                      ("options", "INVALID_OPTION"), ("options", "INVALID_OPTION")]
    with pytest.raises(InvalidOptionError) as only_options:
        parse_options({"concurrency": 0, "retries": 9})
    assert [d["option"] for d in only_options.value.details] == ["concurrency", "retries"]


def test_a_date_filter_names_a_field_of_the_schema():
    with pytest.raises(InvalidOptionError, match=r"date_filter\.field: 'published'") as info:
        parse_batch("https://a.example/", SCHEMA,
                    options={"date_filter": {"field": "published", "from": "2024-01-01"}})
    assert info.value.details[0]["option"] == "date_filter"
    dated = {"type": "object", "properties": {"published": {"type": "string"}}}
    spec = parse_batch("https://a.example/", dated,
                       options={"date_filter": {"field": "published", "from": "2024-01-01"}})
    assert spec.options.date_filter is not None


@pytest.mark.parametrize("schema", [{"type": "object"}, {}, {"type": "object", "properties": {}},
                                    {"type": "object", "required": ["name"]}])
def test_a_schema_that_names_no_field_is_refused(schema):
    with pytest.raises(InvalidSchemaError, match="schema names no fields"):
        parse_schema(schema)
