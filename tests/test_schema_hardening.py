"""Hostile schemas and pages against validation (security audit, issue 20, findings 5 and 7).

Finding 5: a page and a schema that validation could not finish (quadratic
``uniqueItems``, a backtracking ``pattern``, a combinatorial schema) froze a
crawl process for good. Finding 7: schemas accepted at submit whose ``$ref``
jsonschema resolves differently (against the nearest ``$id``), or whose shape
crashed the submit check, left items without a code or answered 500.

The crawls are real (``scrapy crawl batch`` against pages served here and the
example site, records in the embedded MongoDB); the assertions are on what
is stored.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.exceptions import (
    InvalidSchemaError,
    ValidationFailedError,
    ValidationTimeoutError,
)
from batchscraper.extraction.validation import RecordChecker
from batchscraper.inputs import parse_batch
from batchscraper.inputs.schemas import parse_schema
from batchscraper.store import BatchStore
from tests.api_fixtures import (  # noqa: F401  (fixtures)
    ScrapydServer,
    assert_error,
    openapi_fixture,
    scrapyd_fixture,
)
from tests.conftest import assert_counters_match_items, batch_id_from

REVIEWS = 12_000
BACKTRACKING = r"^([a-z]+\s?)+$"
NOT_MATCHING = "a" * 44 + "!"  # 2^44 ways to fail for a backtracking engine
OPTIONS = json.dumps({"render_js": "never", "retries": 0, "concurrency": 8})
CRAWL_SECONDS = 150  # "did not stall": the old code needs hours for any of these pages

# finding 7: jsonschema resolves "#/$defs/n" against https://ids.example/name, not the root
ID_SCOPED_REF = {
    "$defs": {"n": {"type": "string"}},
    "properties": {"name": {"$id": "https://ids.example/name", "$ref": "#/$defs/n"}},
}
PROPERTIES_NOT_AN_OBJECT = {"type": "objekt", "properties": 3}
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
DRAFT_7 = "http://json-schema.org/draft-07/schema#"
NESTED_ALL_THE_WAY = "^(a+)+$"
#: a string with 2^30 ways to fail ``^(a+)+$`` for a backtracking engine
NOT_NESTED_ALL_THE_WAY = "a" * 30 + "!"
NOT_RE2 = {
    "type": "object",
    "properties": {"code": {"type": "string", "pattern": r"^(a+)\1$"}},
    "$defs": {"tagged": {"patternProperties": {"^x-(?!internal)": {"type": "string"}}}},
}


def costly_schema(levels: int = 6, width: int = 16) -> dict[str, Any]:
    """A schema whose ``motto`` takes ``width ** levels`` checks of one string.

    Every ``anyOf`` branch but the last expands the next level and then fails
    (``maxLength: 0``), so jsonschema tries them all: legal, within every size
    and depth limit, and slow in any pure-Python validator.
    """
    defs: dict[str, Any] = {
        f"d{n}": {"anyOf": [{"$ref": f"#/$defs/d{n + 1}", "maxLength": 0}] * (width - 1)
                  + [{"$ref": f"#/$defs/d{n + 1}"}]}
        for n in range(levels)
    }
    defs[f"d{levels}"] = {"type": "string"}
    return {
        "type": "object",
        "$defs": defs,
        "properties": {
            "name": {"type": "string"},
            "sku": {"type": "string"},
            "motto": {"type": "string", "$ref": "#/$defs/d0"},
        },
        "required": ["name"],
    }


# -- pages ---------------------------------------------------------------------------


def product_page(name: str, **fields: Any) -> bytes:
    """A product page whose JSON-LD carries ``name`` and ``fields``."""
    data = {"@context": "https://schema.org", "@type": "Product", "name": name, **fields}
    script = json.dumps(data).replace("</", "<\\/")
    return (f'<!DOCTYPE html><html><head><script type="application/ld+json">{script}'
            f"</script><title>{name}</title></head><body><h1>{name}</h1></body></html>").encode()


def reviews(count: int) -> list[dict[str, Any]]:
    """``count`` distinct reviews: uniqueItems has to look at every one."""
    return [{"@type": "Review", "author": {"@type": "Person", "name": f"reviewer {n}"},
             "reviewRating": {"@type": "Rating", "ratingValue": n % 5 + 1}}
            for n in range(count)]


PAGES = {
    "/reviews": product_page("Kettle with reviews", slug="great kettle", review=reviews(REVIEWS)),
    "/backtracking": product_page("Backtracking kettle", slug=NOT_MATCHING),
    "/costly": product_page("Costly kettle", motto="Boil it"),
}


class _PageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        body = PAGES.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    """Base URL of a local server answering :data:`PAGES`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield "http://{}:{}".format(*server.server_address[:2])
    server.shutdown()
    server.server_close()


def stored_counts(store: BatchStore) -> tuple[int, int]:
    return store.batches.count_documents({}), store.items.count_documents({})


# -- finding 7: what passes submit validates at run time ------------------------------


def test_a_ref_is_resolved_against_its_nearest_id_like_jsonschema_does():
    with pytest.raises(InvalidSchemaError, match="points at nothing") as info:
        parse_schema(ID_SCOPED_REF)
    assert info.value.details == [{
        "path": "properties/name/$ref",
        "message": "$ref '#/$defs/n' points at nothing in the schema;"
                   " refs resolve against the nearest enclosing $id",
    }]


def test_refs_that_jsonschema_resolves_are_accepted_and_validate():
    schema = parse_schema({
        "$id": "https://ids.example/root",
        "$defs": {"n": {"$id": "name", "type": "string", "minLength": 2}},
        "type": "object",
        "properties": {"name": {"$ref": "name"}, "alias": {"$ref": "https://ids.example/name"}},
    })
    checker = RecordChecker(schema)
    assert checker.errors({"name": "Kettle", "alias": "K2"}) == []
    assert [e["path"] for e in checker.errors({"name": "K", "alias": 3})] == ["name", "alias"]


def test_a_schema_of_the_wrong_shape_lists_every_problem_instead_of_crashing():
    with pytest.raises(InvalidSchemaError) as info:
        parse_schema(PROPERTIES_NOT_AN_OBJECT)
    assert info.value.http_status == 422
    assert info.value.message.startswith("not a valid JSON Schema: ")
    assert info.value.message.endswith("; 2 problems in all)")
    assert sorted(d["path"] for d in info.value.details) == ["properties", "type"]


@pytest.mark.parametrize(("schema", "path", "message"), [
    ({"type": "object", "properties": {"a": {"$schema": "http://json-schema.org/draft-07/schema#"}}},
     "properties/a/$schema", "schemas are Draft 2020-12"),
    ({"type": "object", "properties": {"a": {"$ref": "https://evil.example/s.json"}}},
     "properties/a/$ref", "remote $ref is not allowed"),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}},
      "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"items": {"$ref": "#/$defs/a"}}}},
     "$defs/b/items/$ref", "refers to itself"),  # where the loop closes
    # jsonschema matches patternProperties with Python's re when it looks for unevaluated ones
    ({"type": "object", "patternProperties": {"^a": {}}, "unevaluatedProperties": False},
     "", "unevaluatedProperties cannot be combined with patternProperties"),
    # a property may be called like a data keyword: its value is still a schema
    ({"type": "object", "properties": {"enum": {"$schema": DRAFT_7}}},
     "properties/enum/$schema", "schemas are Draft 2020-12"),
    ({"unevaluatedProperties": False,
      "dependentSchemas": {"enum": {"patternProperties": {BACKTRACKING: {}}}}},
     "", "unevaluatedProperties cannot be combined with patternProperties"),
])
def test_refs_and_dialects_jsonschema_would_not_run_are_refused(schema, path, message):
    with pytest.raises(InvalidSchemaError) as info:
        parse_schema(schema)
    assert any(d["path"] == path and message in d["message"] for d in info.value.details), (
        info.value.details)


def test_a_validator_that_breaks_at_run_time_fails_the_record_with_a_code():
    """A schema stored before the submit check knew better still ends each item with a code."""
    with pytest.raises(ValidationFailedError, match="PointerToNowhere") as info:
        RecordChecker(ID_SCOPED_REF).errors({"name": "Kettle"})
    assert info.value.code == "VALIDATION_FAILED"


def nested_under(name: str, levels: int) -> dict[str, Any]:
    """``levels`` objects, each the only property, called ``name``, of the one above."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {name: schema}}
    return schema


def test_a_schema_nested_under_properties_named_like_data_is_refused_for_depth():
    with pytest.raises(InvalidSchemaError, match="nests deeper than 32 levels"):
        parse_schema(nested_under("default", 300))


def test_data_nested_beyond_the_interpreter_stack_is_refused_not_crashed():
    data: Any = "deep"
    for _ in range(5_000):
        data = [data]
    with pytest.raises(InvalidSchemaError, match="nests deeper than 32 levels"):
        parse_schema({"type": "object", "default": data})


# -- finding 5: patterns, uniqueItems, the deadline ------------------------------------


def test_patterns_re2_cannot_run_are_refused_each_by_its_location():
    with pytest.raises(InvalidSchemaError) as info:
        parse_schema(NOT_RE2)
    problems = {d["path"]: d["message"] for d in info.value.details}
    assert set(problems) == {"properties/code/pattern", "$defs/tagged/patternProperties"}
    assert "'^(a+)\\\\1$' is not supported" in problems["properties/code/pattern"]
    assert "no backreferences or lookaround" in problems["$defs/tagged/patternProperties"]


def test_a_backtracking_pattern_fails_the_value_at_once():
    checker = RecordChecker(parse_schema({"type": "object", "properties": {
        "slug": {"type": "string", "pattern": BACKTRACKING},
        "tags": {"type": "object", "patternProperties": {BACKTRACKING: {"type": "integer"}},
                 "additionalProperties": False}}}), timeout=5)
    assert [e["path"] for e in checker.errors({"slug": NOT_MATCHING})] == ["slug"]
    assert checker.errors({"slug": "good kettle", "tags": {"hot water": 1}}) == []
    assert [e["path"] for e in checker.errors({"tags": {NOT_MATCHING: 1}})] == ["tags"]


@pytest.mark.timeout(20)  # Python's re would take minutes
@pytest.mark.parametrize("schema", [
    # submitted: a property called "enum" names the dialect it already is
    {"type": "object", "properties": {"enum": {
        "$schema": DRAFT_2020_12, "type": "string", "pattern": NESTED_ALL_THE_WAY}}},
    # submitted: a $ref into what the walks take for data
    {"type": "object", "properties": {"enum": {"$ref": "#/x-parts/default"}},
     "x-parts": {"default": {"$schema": DRAFT_2020_12, "pattern": NESTED_ALL_THE_WAY}}},
])
def test_a_subschema_naming_a_dialect_keeps_re2_and_the_deadline(schema: dict[str, Any]):
    checker = RecordChecker(parse_schema(schema), timeout=0.01)
    assert [e["path"] for e in checker.errors({"enum": NOT_NESTED_ALL_THE_WAY})] == ["enum"]


@pytest.mark.parametrize("dialect", [DRAFT_2020_12, DRAFT_7])
def test_the_validator_never_evolves_into_a_stock_one(dialect: str):
    """A stored schema may name any dialect anywhere: the checks stay RE2 and bounded."""
    validator = RecordChecker({"type": "object"}).validator
    evolved = validator.evolve(schema={"$schema": dialect, "pattern": NESTED_ALL_THE_WAY})
    assert type(evolved) is type(validator)


@pytest.mark.parametrize(("items", "unique"), [
    ([1, 1.0], False),
    ([True, 1], True),
    ([False, 0, None, "", [], {}], True),
    ([{"a": 1, "b": [1, 2]}, {"b": [1.0, 2], "a": 1}], False),
    ([[1, 2], [2, 1]], True),
    ([{"a": True}, {"a": 1}], True),
    (["1", 1], True),
    ([None, None], False),
])
def test_unique_items_keeps_json_schema_equality(items: list[Any], unique: bool):
    checker = RecordChecker({"type": "object", "properties": {
        "values": {"type": "array", "uniqueItems": True}}})
    assert (checker.errors({"values": items}) == []) is unique


def test_a_costly_schema_ends_in_validation_timeout():
    checker = RecordChecker(parse_schema(costly_schema()), timeout=0.5)
    with pytest.raises(ValidationTimeoutError, match=r"longer than 0.5 s") as info:
        checker.errors({"name": "Kettle", "motto": "Boil it"})
    assert info.value.to_dict()["retryable"] is False


# -- the same, through the command line and the HTTP API --------------------------------

REFUSED = {
    "id-scoped ref": (ID_SCOPED_REF, "INVALID_SCHEMA: $ref '#/$defs/n' points at nothing in"
                                     " the schema; refs resolve against the nearest enclosing"
                                     " $id (at properties/name/$ref)"),
    "properties not an object": (PROPERTIES_NOT_AN_OBJECT,
                                 "INVALID_SCHEMA: not a valid JSON Schema: 3 is not of type"
                                 " 'object' (at properties; 2 problems in all)"),
    "pattern not RE2": (NOT_RE2, "INVALID_SCHEMA: not a valid JSON Schema: pattern"
                                 " '^x-(?!internal)' is not supported: invalid perl operator:"
                                 " (?!; patterns use RE2 syntax (no backreferences or lookaround)"
                                 " (at $defs/tagged/patternProperties; 2 problems in all)"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_command_line_refuses_them_with_exit_2(case: str, crawl, store: BatchStore):
    schema, expected = REFUSED[case]
    before = stored_counts(store)
    result = crawl(urls="https://shop.example/p/1", schema=json.dumps(schema))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("scrapy crawl batch: error: ") and expected in lines[0], lines[0]
    assert stored_counts(store) == before


@pytest.mark.slow
def test_the_api_refuses_them_with_422(
    scrapyd: ScrapydServer, openapi: dict[str, Any], store: BatchStore
) -> None:
    before = stored_counts(store)
    for schema, _ in REFUSED.values():
        answer = scrapyd.call("POST", "/batches",
                              {"urls": ["https://shop.example/p/1"], "schema": schema})
        error = assert_error(openapi, answer, 422, "INVALID_SCHEMA")
        assert error["details"] and all(d["path"] for d in error["details"]), error
    assert stored_counts(store) == before


# -- real crawls ------------------------------------------------------------------------


def crawl_items(crawl, store: BatchStore, urls: list[str], schema: dict[str, Any],
                **settings: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Crawl ``urls`` to the end; the stored batch (counters checked) and its items."""
    result = crawl(urls=json.dumps(urls), schema=json.dumps(schema), options=OPTIONS,
                   settings=settings, timeout=CRAWL_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    batch_id = batch_id_from(result)
    return assert_counters_match_items(store, batch_id), list(store.iter_items(batch_id))


@pytest.mark.slow
def test_twelve_thousand_unique_reviews_and_a_backtracking_pattern_finish(
    crawl, store: BatchStore, site: ExampleSite, pages: str
):
    schema = {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"},
        "slug": {"type": "string", "pattern": BACKTRACKING},
        "review": {"type": "array", "uniqueItems": True, "items": {
            "type": "object", "properties": {"author": {"type": "string"},
                                             "rating": {"type": "number"}}}},
    }}
    urls = [f"{pages}/reviews", f"{pages}/backtracking", site.url("/products/21")]
    batch, (reviewed, backtracking, product) = crawl_items(crawl, store, urls, schema)
    assert reviewed["status"] == "completed", reviewed.get("error")
    assert reviewed["validation"] == {"valid": True, "errors": []}
    authors = {review["author"] for review in reviewed["data"]["review"]}
    assert authors == {f"reviewer {n}" for n in range(REVIEWS)}
    assert backtracking["status"] == "failed"
    assert backtracking["error"]["code"] == "VALIDATION_FAILED"
    assert [e["path"] for e in backtracking["validation"]["errors"]] == ["slug"]
    assert product["status"] == "completed"
    assert product["data"]["name"] == product_expected(21)["name"]
    assert batch["status"] == "partial" and batch["failures"] == {"VALIDATION_FAILED": 1}


@pytest.mark.slow
def test_a_record_too_costly_to_validate_fails_alone_within_the_deadline(
    crawl, store: BatchStore, site: ExampleSite, pages: str
):
    urls = [f"{pages}/costly", *(site.url(f"/products/{n}") for n in (22, 23, 24))]
    batch, items = crawl_items(crawl, store, urls, costly_schema(),
                               BATCH_VALIDATION_TIMEOUT=2)
    costly, *products = items
    assert costly["status"] == "failed"
    assert costly["error"] == {
        "code": "VALIDATION_TIMEOUT", "retryable": False,
        "message": "validating the record took longer than 2 s (BATCH_VALIDATION_TIMEOUT)",
    }
    assert costly["data"]["motto"] == "Boil it"  # what was extracted is kept
    assert costly["duration_ms"] < 60_000  # the deadline, not the ~10 minutes of the schema
    assert [item["data"]["sku"] for item in products] == [
        product_expected(n)["sku"] for n in (22, 23, 24)]
    assert all(item["status"] == "completed" for item in products)
    assert batch["status"] == "partial" and batch["failures"] == {"VALIDATION_TIMEOUT": 1}


@pytest.mark.slow
def test_a_stored_schema_that_breaks_the_validator_fails_items_with_a_code(
    crawl, store: BatchStore, site: ExampleSite
):
    """A batch stored before the submit check resolved refs like jsonschema (finding 7)."""
    spec = parse_batch([site.url(f"/products/{n}") for n in (25, 26)],
                       {"type": "object", "properties": {"name": {"type": "string"}}},
                       options=OPTIONS)
    batch_id = store.create_batch(dataclasses.replace(spec, schema=ID_SCOPED_REF))["_id"]
    result = crawl(batch_id=batch_id, timeout=CRAWL_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    batch = assert_counters_match_items(store, batch_id)
    assert batch["status"] == "failed" and batch["failures"] == {"VALIDATION_FAILED": 2}
    for item in store.iter_items(batch_id):
        assert item["error"]["code"] == "VALIDATION_FAILED"
        assert "PointerToNowhere" in item["error"]["message"]
