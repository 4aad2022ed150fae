"""API input hardening against a real Scrapyd: hostile bodies by hand, then every endpoint fuzzed.

Every answer below 500, every 4xx with the JSON error body, and nothing stored
for a refused submission. The crawls the fuzzed batches start are inert: no
port is allowed (``BATCH_ALLOWED_PORTS=0``), so every URL fails before DNS.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from batchscraper.store import BatchStore
from batchscraper.store.mongo import connect, database_name
from tests.api_fixtures import KEYS, Answer, ScrapydServer, assert_matches
from tests.faults.conftest import PRODUCT_SCHEMA, start_fault_scrapyd

pytestmark = pytest.mark.slow

INERT_JOBS = {
    "BATCH_ALLOWED_PORTS": "0",  # no URL has port 0: every fetch is refused before DNS
    "BATCH_BROWSER_ENABLED": "False",
    "BATCH_PROGRESS_INTERVAL": "0",
}
MAX_BODY = 1_000_000  # tests.api_fixtures.API_SETTINGS
FUZZ_EXAMPLES = 40  # per operation and generation mode
FUZZ_BUDGET_SECONDS = 75  # the fuzz stops generating after this long
AUTH = {"X-API-Key": KEYS["alice"]}


@pytest.fixture(scope="module")
def api(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScrapydServer]:
    """Scrapyd with API keys, one crawl slot, inert crawls, no webhook deliveries."""
    uri = mongo_uri.replace(f"/{database_name(mongo_uri)}?", "/faults_api?")
    server = start_fault_scrapyd(
        tmp_path_factory.mktemp("api"), uri, max_proc=1, keys=True,
        batch_api_job_settings=json.dumps(INERT_JOBS),
        batch_webhook_poll_interval="100000",  # fuzzed webhook URLs are never called
    )
    server.store = BatchStore(connect(uri), "faults_api")  # type: ignore[attr-defined]
    yield server
    server.stop()
    server.store.client.drop_database("faults_api")  # type: ignore[attr-defined]
    server.store.client.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def spec(api: ScrapydServer) -> dict[str, Any]:
    return dict(api.call("GET", "/openapi.json", owner=None).json())


def _batches(api: ScrapydServer) -> int:
    return int(api.store.batches.count_documents({}))  # type: ignore[attr-defined]


def _raw(api: ScrapydServer, body: bytes, content_type: str | None = "application/json",
         *, chunked: bool = False, path: str = "/batches") -> Answer:
    """A POST with exactly these bytes (optionally without Content-Length, chunked)."""
    port = int(api.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = dict(AUTH)
    if content_type is not None:
        headers["Content-Type"] = content_type
    try:
        if chunked:
            connection.request("POST", path, body=iter([body[i:i + 65536] for i in
                                                       range(0, len(body), 65536)]),
                               headers=headers, encode_chunked=True)
        else:
            connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def _valid(**changes: Any) -> dict[str, Any]:
    return {"urls": ["https://example.com/1"], "schema": PRODUCT_SCHEMA, **changes}


def _nested_schema(levels: int) -> dict[str, Any]:
    leaf: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        leaf = {"type": "object", "properties": {"a": leaf}}
    return leaf


def _deep(levels: int) -> bytes:
    return b'{"urls": ["https://example.com/"], "prompt": ' + b"[" * levels + b"]" * levels + b"}"


HOSTILE_BODIES: list[tuple[str, bytes, str | None, int, str]] = [
    ("deep array", _deep(100_000), "application/json", 400, "INVALID_INPUT"),
    ("deep object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json", 400,
     "INVALID_INPUT"),
    ("4301-digit integer", b'{"urls": ["https://example.com/"], "options": {"retries": '
     + b"9" * 4301 + b"}}", "application/json", 400, "INVALID_INPUT"),
    ("lone surrogate", json.dumps(_valid(prompt="\ud800")).encode("utf-8", "surrogatepass")
     .replace(b"\xed\xa0\x80", b"\\ud800"), "application/json", 400, "INVALID_INPUT"),
    ("latin-1 bytes", json.dumps(_valid(prompt="café"), ensure_ascii=False).encode("latin-1"),
     "application/json", 400, "INVALID_INPUT"),
    ("not JSON", b"urls=https://example.com/", "application/json", 400, "INVALID_INPUT"),
    ("form content type", b"urls=https://example.com/", "application/x-www-form-urlencoded",
     415, "UNSUPPORTED_MEDIA_TYPE"),
    ("text content type", json.dumps(_valid()).encode(), "text/plain", 415,
     "UNSUPPORTED_MEDIA_TYPE"),
    ("latin-1 charset", json.dumps(_valid()).encode(), "application/json; charset=latin-1",
     415, "UNSUPPORTED_MEDIA_TYPE"),
    ("array body", b"[1, 2]", "application/json", 400, "INVALID_INPUT"),
    ("null body", b"null", "application/json", 400, "INVALID_INPUT"),
    ("unknown field", json.dumps(_valid(callback="x")).encode(), "application/json", 400,
     "INVALID_INPUT"),
    ("unknown option", json.dumps(_valid(options={"turbo": True})).encode(), "application/json",
     422, "INVALID_OPTION"),
    ("URL with credentials", json.dumps(_valid(urls=["https://u:p@example.com/"])).encode(),
     "application/json", 422, "INVALID_URL"),
    ("recursive schema", json.dumps(_valid(schema={
        "type": "object", "properties": {"self": {"$ref": "#"}}})).encode(),
     "application/json", 422, "INVALID_SCHEMA"),
    ("remote $ref", json.dumps(_valid(schema={
        "type": "object", "properties": {"a": {"$ref": "https://evil.example/s.json"}}})).encode(),
     "application/json", 422, "INVALID_SCHEMA"),
    ("schema 40 levels deep", json.dumps(_valid(schema=_nested_schema(40))).encode(),
     "application/json", 422, "INVALID_SCHEMA"),
    ("200 KB schema", json.dumps(_valid(schema={"type": "object", "properties": {
        f"field_{i}": {"type": "string", "description": "x" * 80} for i in range(2000)}}))
     .encode(), "application/json", 422, "INVALID_SCHEMA"),
]


@pytest.mark.parametrize(("name", "body", "content_type", "status", "code"), HOSTILE_BODIES,
                         ids=[case[0] for case in HOSTILE_BODIES])
def test_hostile_body_is_refused_with_the_json_error_and_nothing_stored(
    api: ScrapydServer, spec: dict[str, Any], name: str, body: bytes, content_type: str | None,
    status: int, code: str,
) -> None:
    before = _batches(api)
    answer = _raw(api, body, content_type)
    assert answer.status == status, (name, answer.status, answer.body[:300])
    error = answer.json()
    assert_matches(spec, "Error", error)
    assert error["error"]["code"] == code, error
    assert _batches(api) == before


@pytest.mark.parametrize("chunked", [False, True], ids=["announced", "chunked"])
def test_huge_body_is_413(api: ScrapydServer, chunked: bool) -> None:
    before = _batches(api)
    body = json.dumps(_valid(prompt="x" * (MAX_BODY * 2))).encode()
    answer = _raw(api, body, chunked=chunked)
    assert answer.status == 413, answer.body[:300]
    assert answer.json()["error"]["code"] == "TOO_LARGE"
    assert _batches(api) == before


def test_wrong_methods_queries_and_ids_are_4xx(api: ScrapydServer) -> None:
    for method, path in [("PUT", "/batches"), ("PATCH", "/batches/b_" + "0" * 32),
                         ("GET", "/batches?limit=%C2%B2"), ("GET", "/batches?page=-1"),
                         ("GET", "/batches?status=%00"), ("GET", "/batches/%ff%fe/items"),
                         ("GET", "/batches/" + "x" * 5000), ("POST", "/batches/b_x/retry")]:
        answer = api.call(method, path, None)
        assert 400 <= answer.status < 500, (method, path, answer.status, answer.body[:200])
        assert "code" in answer.json()["error"]
    unauthenticated = api.call("GET", "/batches", owner=None)
    assert unauthenticated.status == 401
    assert KEYS["alice"] not in unauthenticated.body.decode()


def test_fuzz_every_endpoint_no_server_error(api: ScrapydServer, spec: dict[str, Any]) -> None:
    """Positive and negative examples for each operation of /openapi.json; no 5xx."""
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    fuzz = Fuzz(api.url, time.monotonic() + FUZZ_BUDGET_SECONDS)
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz.run(operation, mode)
    assert not fuzz.problems, "\n".join(fuzz.problems[:20])
    assert fuzz.calls >= 2 * len(operations)  # the fuzz did run
    assert api.call("GET", "/openapi.json", owner=None).status == 200  # Scrapyd still answers


class Fuzz:
    """Sends hypothesis-generated cases of one operation at a time; collects what went wrong."""

    def __init__(self, base_url: str, deadline: float) -> None:
        self.base_url = base_url
        self.deadline = deadline
        self.problems: list[str] = []
        self.calls = 0

    def run(self, operation: Any, mode: GenerationMode) -> None:
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def exercise(case: Any) -> None:
            if time.monotonic() < self.deadline:
                self.check(case, mode)

        try:
            exercise()
        except Unsatisfiable:  # nothing in the operation can be made invalid (no parameters)
            assert mode is GenerationMode.NEGATIVE

    def check(self, case: Any, mode: GenerationMode) -> None:
        self.calls += 1
        response = case.call(base_url=self.base_url, headers=AUTH, timeout=30)
        where = f"{case.method} {case.formatted_path} ({mode.value})"
        if response.status_code >= 500:
            self.problems.append(f"{where}: {response.status_code} {response.text[:300]}")
        elif response.status_code >= 400:
            try:
                assert response.json()["error"]["code"]
            except (ValueError, KeyError, TypeError, AssertionError):
                self.problems.append(
                    f"{where}: {response.status_code} without the JSON error body: "
                    f"{response.text[:200]}"
                )
