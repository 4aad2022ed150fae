"""Bad input on ``scrapy crawl batch``: exit code 2, one readable line, nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchscraper.store import BatchStore

SCHEMA = json.dumps({"type": "object", "properties": {"title": {"type": "string"}}})
URL = "https://shop.example/p/1"

CASES = {
    "no urls": ({"schema": SCHEMA}, "INVALID_INPUT: urls: missing"),
    "prompt-only without an LLM": (
        {"urls": URL, "prompt": "the title"},
        "INVALID_INPUT: prompt: a prompt-only batch needs an LLM endpoint",
    ),
    "ftp url": (
        {"urls": f"{URL},ftp://x.example/f", "schema": SCHEMA},
        "INVALID_URL: urls: 1 invalid: index 1 ('ftp://x.example/f')",
    ),
    "every problem at once": (
        {"urls": f"ftp://x.example/f,{URL},http://", "schema": SCHEMA, "concurrency": "100",
         "retries": "9"},
        "INVALID_URL: urls: 2 invalid: index 0 ('ftp://x.example/f'): only http and https URLs"
        " are fetched; index 2 ('http://'): has no host; concurrency: must be between 1 and 64,"
        " got '100'; retries: must be between 0 and 5, got '9'",
    ),
    "date_filter field not in schema": (
        {"urls": URL, "schema": SCHEMA,
         "date_filter": '{"field": "published", "from": "2024-01-01"}'},
        "INVALID_OPTION: date_filter.field: 'published' is not a field of the schema;"
        " one of ['title']",
    ),
    "schema without fields": (
        {"urls": URL, "schema": '{"type": "object"}'},
        "INVALID_SCHEMA: schema names no fields",
    ),
    "bad schema json": (
        {"urls": URL, "schema": "{nope"},
        "INVALID_SCHEMA: schema is not valid JSON",
    ),
    "bad schema type": (
        {"urls": URL, "schema": '{"type":"object","properties":{"a":{"type":"x"}}}'},
        "INVALID_SCHEMA: not a valid JSON Schema",
    ),
    "remote ref": (
        {
            "urls": URL,
            "schema": '{"type":"object","properties":{"a":{"$ref":"http://x.example/s"}}}',
        },
        "INVALID_SCHEMA: remote $ref",
    ),
    "unknown option": (
        {"urls": URL, "schema": SCHEMA, "colour": "blue"},
        "INVALID_OPTION: options: unknown ['colour']",
    ),
    "concurrency range": (
        {"urls": URL, "schema": SCHEMA, "options": '{"concurrency": 0}'},
        "INVALID_OPTION: concurrency: must be between 1 and 64",
    ),
    "missing file": (
        {"urls": "@/nonexistent/urls.txt", "schema": SCHEMA},
        "INVALID_INPUT: urls: cannot read /nonexistent/urls.txt",
    ),
    "unknown batch": ({"batch_id": "b_doesnotexist"}, "NOT_FOUND: no batch 'b_doesnotexist'"),
    "batch id with a record option": (
        {"batch_id": "b_x", "max_items_per_url": "3"},
        "INVALID_INPUT: batch_id: cannot be combined with ['max_items_per_url']",
    ),
    "batch id with a run-time option out of range": (
        {"batch_id": "b_x", "concurrency": "100"},
        "INVALID_OPTION: concurrency: must be between 1 and 64",
    ),
    "batch id with urls": (
        {"batch_id": "b_x", "urls": URL},
        "INVALID_INPUT: batch_id: cannot be combined with ['urls']",
    ),
}


def stored_counts(store: BatchStore) -> tuple[int, int]:
    return store.batches.count_documents({}), store.items.count_documents({})


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line(case: str, crawl, store: BatchStore):
    args, expected = CASES[case]
    before = stored_counts(store)
    result = crawl(**args)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("scrapy crawl batch: error: ")
    assert expected in lines[0]
    assert stored_counts(store) == before


def test_too_many_urls_is_413_class(crawl, store: BatchStore, tmp_path: Path):
    urls = tmp_path / "urls.txt"
    urls.write_text("\n".join(f"{URL}?n={n}" for n in range(5)))
    before = stored_counts(store)
    result = crawl(urls=f"@{urls}", schema=SCHEMA, settings={"BATCH_MAX_URLS": 4})
    assert result.returncode == 2
    assert "TOO_LARGE: urls: 5 URLs; the limit is 4" in result.stderr
    assert stored_counts(store) == before
