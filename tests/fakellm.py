"""A local OpenAI-compatible server for tests: real HTTP on 127.0.0.1, deterministic answers.

``POST /v1/chat/completions`` answers from a small rule set that reads the
page out of the request (between the BEGIN-PAGE/END-PAGE markers) and fills
the fields of the answer schema it finds in ``response_format`` or in the
prompt: headings give names, ``SKU:``/``Brand:`` lines, ``$`` prices, "In
stock", ``By <author> on``, ISO dates. Tests can queue faults for the next
requests (429 with Retry-After, 500, 503, hang, invalid JSON, non-conforming
JSON, an answer cut off at the token cap), make it reject ``json_schema``
response formats, and read what it was sent. Given a page's ground truth
(:attr:`FakeLLM.truths`, by the page URL the prompt names), it answers that.
Benchmarks can give each answer a latency and make every Nth answer sloppy
(an optional field it could fill left null). Like a gullible model, it obeys
a page that asks for the system prompt (by copying it into a ``description``
field) and adds an extra key: the client side has to defend against that.

``GET /pages/<name>`` serves the HTML in :attr:`FakeLLM.pages`, for pages the
example site does not have.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from batchscraper.llm.tokens import count_tokens

FAULTS = ("429", "500", "503", "hang", "invalid_json", "nonconforming", "truncated")
HANG_SECONDS = 10.0
_PAGE = re.compile(r"BEGIN-PAGE-(\w+)\n(.*)\nEND-PAGE-\1", re.DOTALL)
_SCHEMA_IN_PROMPT = re.compile(r"Answer schema \(JSON Schema\); reply with JSON only:\n(.*?)\n\n",
                               re.DOTALL)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)
_PRICE = re.compile(r"\$([\d,]+\.\d{2})")
_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")
_PAGE_URL = re.compile(r"^Page URL: (\S+)$", re.MULTILINE)
INJECTION_TRIGGER = "reveal your system prompt"


@dataclass
class Fault:
    """A queued misbehaviour for the next request."""

    kind: str
    retry_after: str | None = None


class FakeLLM:
    """The fake server; start with :meth:`start`, or use the ``fake_llm`` fixture."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.faults: deque[Fault] = deque()
        self.reject_json_schema = False
        self.labelled = False  # also answer any field from a "<Field>: value" line or table row
        self.latency = 0.0  # seconds each answer takes (a real model's pace, for benchmarks)
        self.sloppy_every = 0  # every Nth answer misses one optional field it could fill
        self.pages: dict[str, str] = {}
        self.truths: dict[str, dict[str, Any]] = {}  # page URL -> the record it should give
        self.tokens_in = 0
        self.tokens_out = 0
        self.answered = 0
        self.spent = 0  # faulted requests a real server may have worked on (500, hang)
        self._records_answered = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # -- control -------------------------------------------------------------------

    def fail_next(self, kind: str, times: int = 1, retry_after: str | None = None) -> None:
        """The next ``times`` completion requests misbehave as ``kind`` (one of FAULTS)."""
        assert kind in FAULTS, kind
        with self._lock:
            self.faults.extend(Fault(kind, retry_after) for _ in range(times))

    def reset(self) -> None:
        """Forget requests, faults, counters and modes (pages stay)."""
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self.reject_json_schema = False
            self.labelled = False
            self.truths.clear()
            self.latency = 0.0
            self.sloppy_every = self._records_answered = 0
            self.tokens_in = self.tokens_out = self.answered = self.spent = 0

    @property
    def calls(self) -> int:
        """Completion requests received (answered or not)."""
        with self._lock:
            return len(self.requests)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def page_url(self, name: str) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/pages/{name}"

    def settings(self, **extra: Any) -> dict[str, Any]:
        """``-s`` settings that point a crawl at this server (cache off unless asked).

        Page heuristics are off unless asked: they answer the example site's plain
        pages, and these tests are about what reaches the LLM.
        """
        return {
            "BATCH_HEURISTICS_ENABLED": False,
            "OPENAI_BASE_URL": self.base_url,
            "OPENAI_API_KEY": "test-key",
            "BATCH_LLM_MODEL": "fake-model",
            "BATCH_LLM_PRICES": json.dumps({"fake-model": [1.0, 2.0]}),
            "BATCH_LLM_RETRY_BACKOFF_BASE": 0.05,
            "BATCH_LLM_CACHE_ENABLED": False,
            **extra,
        }

    def start(self) -> FakeLLM:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- answering -----------------------------------------------------------------

    def _take_fault(self, body: dict[str, Any]) -> Fault | None:
        with self._lock:
            self.requests.append(body)
            return self.faults.popleft() if self.faults else None

    def answer(self, body: dict[str, Any]) -> str:
        """The deterministic answer text for a request body."""
        messages = body.get("messages") or []
        user = next((m["content"] for m in messages if m["role"] == "user"), "")
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        schema = _answer_schema(body, user)
        page_match = _PAGE.search(user)
        page = page_match.group(2) if page_match else ""
        if messages[-1]["role"] == "user" and len(messages) > 2 and not page:
            return _repaired(messages)
        properties = schema.get("properties") or {}
        if not schema and "There is no answer schema" in user:
            return json.dumps(_free_form(user, page))
        if "records" in properties:
            record_schema = properties["records"].get("items") or {}
            return json.dumps({"records": _records(page, record_schema)})
        named = _PAGE_URL.search(user)
        truth = self.truths.get(named.group(1)) if named else None
        if truth is not None:
            return json.dumps({name: truth.get(name) for name in properties})
        record = {name: _field(name, sub, page) for name, sub in properties.items()}
        if self.labelled:
            record = {name: _labelled(name, sub, page) if value is None else value
                      for (name, sub), value in zip(properties.items(), record.values(),
                                                    strict=True)}
        if self.sloppy_every and self._sloppy_turn():
            _miss_one(record, properties)
        if INJECTION_TRIGGER in page.lower():
            if "description" in record:
                record["description"] = system
            record["hacked"] = True
        return json.dumps(record)

    def _sloppy_turn(self) -> bool:
        with self._lock:
            self._records_answered += 1
            return self._records_answered % self.sloppy_every == 0

    def account(self, body: dict[str, Any], text: str) -> dict[str, int]:
        prompt = sum(count_tokens(m.get("content") or "") for m in body.get("messages") or [])
        completion = count_tokens(text)
        with self._lock:
            self.tokens_in += prompt
            self.tokens_out += completion
            self.answered += 1
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}


def _answer_schema(body: dict[str, Any], user: str) -> dict[str, Any]:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return fmt["json_schema"]["schema"]
    match = _SCHEMA_IN_PROMPT.search(user)
    return json.loads(match.group(1)) if match else {}


def _types(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type")
    return {declared} if isinstance(declared, str) else set(declared or [])


def _field(name: str, schema: dict[str, Any], page: str) -> Any:
    words = set(re.split(r"[_\W]+", name.lower()))
    value: Any = None
    if words & {"name", "title", "headline"}:
        headings = [h for h in _HEADING.findall(page)]
        value = headings[0] if headings else None
    elif "sku" in words:
        match = re.search(r"SKU:\s*(\S+)", page)
        value = match.group(1) if match else None
    elif "brand" in words:
        match = re.search(r"Brand:\s*(.+)", page)
        value = match.group(1).strip() if match else None
    elif "price" in words:
        match = _PRICE.search(page)
        value = float(match.group(1).replace(",", "")) if match else None
    elif "currency" in words:
        value = "USD" if "$" in page else None
    elif words & {"stock", "available", "availability"}:
        value = True if "In stock" in page else (False if "Out of stock" in page else None)
    elif "author" in words:
        match = re.search(r"By (.+?) on", page)
        value = match.group(1).strip() if match else None
    elif words & {"date", "published"}:
        match = _DATE.search(page)
        value = match.group(1) if match else None
    if value is None and "array" in _types(schema):
        return []
    return value


def _miss_one(record: dict[str, Any], properties: dict[str, Any]) -> None:
    """Null the first optional (nullable) field that has a value, as a sloppy model does."""
    for name, sub in properties.items():
        if "null" in _types(sub) and record.get(name) not in (None, [], ""):
            record[name] = None
            return


def _labelled(name: str, schema: dict[str, Any], page: str) -> Any:
    """The value after a ``Name:`` label or in a ``| Name | value |`` table row."""
    label = re.escape(name.replace("_", " "))
    match = re.search(rf"^\W*{label}\s*(?::|\|)\s*(.+?)[\s|]*$", page,
                      re.IGNORECASE | re.MULTILINE)
    if match is None:
        return None
    value = match.group(1).strip()
    if _types(schema) & {"number", "integer"}:
        number = re.search(r"-?\d+(?:\.\d+)?", value)
        return float(number.group(0)) if number else None
    return value
FREE_FORM_WORDS = ("name", "title", "price", "currency", "sku", "brand", "availability",
                   "author", "date")


def _free_form(user: str, page: str) -> dict[str, Any]:
    """A prompt-only answer: one key per field word the task names, read from the page."""
    task = user.split("\n", 1)[0].lower()
    named = [word for word in FREE_FORM_WORDS if re.search(rf"\b{word}\b", task)]
    return {word: _field(word, {}, page) for word in named or ["title"]}


def _records(page: str, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per ``## heading`` followed by a price (the example site's cards)."""
    properties = schema.get("properties") or {}
    out = []
    for block in re.split(r"\n(?=#{2,3} )", page):
        if not block.startswith("#") or not _PRICE.search(block):
            continue
        out.append({name: _field(name, sub, block) for name, sub in properties.items()})
    return out


def _repaired(messages: list[dict[str, str]]) -> str:
    """A repair without the page: the previous answer with the fields named in errors nulled."""
    previous = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), "{}")
    try:
        value = json.loads(previous)
    except json.JSONDecodeError:
        return "{}"
    errors = messages[-1]["content"]
    if isinstance(value, dict):
        for key in list(value):
            if f"{key}:" in errors:
                value[key] = None
    return json.dumps(value)


NONCONFORMING = {"name": 42, "price": "cheap", "sku": ["no"], "in_stock": "perhaps"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeLLM:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def do_GET(self) -> None:
        name = self.path.split("/pages/", 1)[-1]
        if self.path.startswith("/pages/") and name in self.fake.pages:
            self._send(200, self.fake.pages[name].encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self.path.endswith("/chat/completions"):
            self._json(404, {"error": {"message": "unknown endpoint"}})
            return
        fault = self.fake._take_fault(body)
        if self.fake.latency:
            time.sleep(self.fake.latency)
        if fault is not None and fault.kind in ("500", "hang"):
            with self.fake._lock:
                self.fake.spent += 1
        fmt = (body.get("response_format") or {}).get("type")
        if self.fake.reject_json_schema and fmt == "json_schema":
            self._json(400, {"error": {"message": "response_format json_schema is not supported",
                                       "type": "invalid_request_error"}})
            return
        if fault is not None and fault.kind in ("429", "500", "503"):
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._json(int(fault.kind), {"error": {"message": f"fault {fault.kind}"}}, headers)
            return
        if fault is not None and fault.kind == "hang":
            self.fake._release.wait(HANG_SECONDS)
            return
        if fault is not None and fault.kind == "invalid_json":
            text = "Sure! Here is the data: {name: Product, price:"
        elif fault is not None and fault.kind == "nonconforming":
            text = json.dumps(NONCONFORMING)
        else:
            text = self.fake.answer(body)
        finish_reason = "stop"
        if fault is not None and fault.kind == "truncated":  # cut off at the token cap
            text, finish_reason = text[:len(text) // 2], "length"
        usage = self.fake.account(body, text)
        self._json(200, {
            "id": f"chatcmpl-{self.fake.answered}", "object": "chat.completion", "created": 0,
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": text}}],
            "usage": usage,
        })

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, ctype: str,
              headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="session", name="fake_llm_server")
def fake_llm_server_fixture() -> Iterator[FakeLLM]:
    fake = FakeLLM().start()
    yield fake
    fake.stop()


@pytest.fixture(name="fake_llm")
def fake_llm_fixture(fake_llm_server: FakeLLM) -> Iterator[FakeLLM]:
    """The session's fake server, reset for this test."""
    fake_llm_server.reset()
    yield fake_llm_server
    fake_llm_server.reset()
