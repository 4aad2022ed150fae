"""The spider against a real local model: llama.cpp's server with Qwen2.5-Coder-0.5B-Instruct.

The fake server answers by rules; these tests let a real small model answer
(``batchscraper.llm.local``: built once per machine, cached outside the
clone). Pages are small, so that model time stays around two minutes on two
cores. What they pin is what a real model brings: the answer format enforced by
the server's grammar from the json_schema, a list page, the repair re-prompt,
grounding, and the cache (a re-run makes no call).

They run last (see conftest), because on a fresh machine the server may still
be building in the background while the other tests run; the first one waits
for it.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from batchscraper.llm import local
from batchscraper.store import BatchStore
from tests.conftest import batch_id_from

pytestmark = [pytest.mark.llm, pytest.mark.slow, pytest.mark.timeout(3600)]

PRODUCT = """<!DOCTYPE html><html><head><title>Aurora desk lamp | Lumen Shop</title></head>
<body><nav>Home / Lighting / Desk lamps</nav>
<main><h1>Aurora desk lamp</h1>
<p>Article number: AUR-2231</p>
<p>Price: 49.90 EUR</p>
<p>Availability: in stock, ships in 2 days.</p>
<p>A dimmable LED lamp with a weighted base.</p>
<table><tr><th>Arm</th><td>brushed steel</td></tr><tr><th>Power</th><td>8 W</td></tr>
<tr><th>Light</th><td>2700 K, warm white</td></tr></table></main>
<footer>Lumen Shop GmbH</footer></body></html>"""

LISTING = """<!DOCTYPE html><html><head><title>Desk lamps | Lumen Shop</title></head>
<body><h1>Desk lamps</h1><ul>
<li><h2>Aurora desk lamp</h2><p>49.90 EUR</p></li>
<li><h2>Borealis reading light</h2><p>35.00 EUR</p></li>
<li><h2>Cirrus clamp lamp</h2><p>22.50 EUR</p></li>
</ul></body></html>"""

# name and price come from the page heuristics; the rest needs reading the page
PRODUCT_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "price": {"type": "number"},
        "arm_material": {"type": "string"},
        "power_watts": {"type": "integer"},
        "support_phone": {"type": "string"},
    },
    "required": ["name", "price", "arm_material", "power_watts"],
}
LIST_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
    "required": ["name", "price"],
}


class _Pages(BaseHTTPRequestHandler):
    pages: dict[str, str] = {"/product": PRODUCT, "/listing": LISTING}

    def do_GET(self) -> None:
        page = self.pages.get(self.path)
        body = (page or "not found").encode()
        self.send_response(200 if page else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def local_llm() -> dict[str, str]:
    """Settings that point a crawl at the local model (built and started if needed)."""
    port = local.ensure_running()
    return {"OPENAI_BASE_URL": local.base_url(port), "BATCH_LLM_MODEL": local.DEFAULT_MODEL.name}


def crawl_llm(crawl, llm: dict[str, str], urls: list[str], schema: dict, settings: dict | None = None,
              **args: Any) -> str:
    args.setdefault("render_js", "never")
    result = crawl(urls=",".join(urls), schema=json.dumps(schema),
                   settings={**llm, "BATCH_LLM_CACHE_ENABLED": False, **(settings or {})},
                   timeout=900, **args)
    assert result.returncode == 0, result.stderr[-3000:]
    return batch_id_from(result)


def test_a_page_without_structured_data_is_read_by_the_model(crawl, pages, store: BatchStore,
                                                            local_llm):
    batch_id = crawl_llm(crawl, local_llm, [f"{pages}/product"], PRODUCT_SCHEMA)
    (item,) = store.iter_items(batch_id)
    assert item["status"] == "completed", item.get("error")
    assert item["extraction"]["method"] == "heuristic+llm"
    assert set(item["extraction"]["llm_fields"]) >= {"arm_material", "power_watts"}
    data = item["data"]
    assert "aurora" in data["name"].lower()
    assert data["price"] == pytest.approx(49.90)
    assert "steel" in data["arm_material"].lower() and data["power_watts"] == 8
    assert data.get("support_phone") is None  # not on the page: never invented
    assert item["llm_calls"] >= 1 and item["llm_ms"] > 0
    assert item["duration_ms"] >= item["llm_ms"]


def test_a_list_page(crawl, pages, store: BatchStore, local_llm):
    batch_id = crawl_llm(crawl, local_llm, [f"{pages}/listing"], LIST_SCHEMA,
                         max_items_per_url=5)
    (item,) = store.iter_items(batch_id)
    assert item["status"] == "completed", item.get("error")
    prices = sorted(record["price"] for record in item["data"])
    assert len(item["data"]) == 3
    assert prices == pytest.approx([22.50, 35.00, 49.90])


def test_a_repair_prompt_fixes_what_the_grammar_cannot(crawl, pages, store: BatchStore,
                                                       local_llm):
    """``multipleOf`` is not in the grammar: the page's 49.90 fails it, the repair is sent."""
    schema = {"type": "object", "properties": {
        "name": {"type": "string"}, "price": {"type": "number", "multipleOf": 1}},
        "required": ["name", "price"]}
    batch_id = crawl_llm(crawl, local_llm, [f"{pages}/product"], schema,
                         prompt="Extract the product and its price.")
    (item,) = store.iter_items(batch_id)
    assert item["extraction"]["repaired"] is True
    assert item["llm_calls"] == 2
    # whatever the model answered the second time, the record is checked against the schema
    if item["status"] == "completed":
        assert item["data"]["price"] % 1 == 0
    else:
        assert item["error"]["code"] in ("VALIDATION_FAILED", "LLM_BAD_OUTPUT")


def test_grounding_strict_keeps_only_what_the_page_says(crawl, pages, store: BatchStore,
                                                       local_llm):
    schema = {"type": "object", "properties": {
        "name": {"type": "string"}, "arm_material": {"type": "string"},
        "warranty_years": {"type": "integer"}, "manufacturer_email": {"type": "string"}},
        "required": ["name", "arm_material"]}
    batch_id = crawl_llm(crawl, local_llm, [f"{pages}/product"], schema, grounding="strict")
    (item,) = store.iter_items(batch_id)
    assert item["status"] == "completed", item.get("error")
    grounded = item["extraction"]["grounded"]
    # strict: every value the model gave that is kept is on the page (a small model may
    # still misread one, e.g. the lamp's "8 W" as a warranty of 8 years: it is on the page)
    assert all(grounded[name] or item["data"].get(name) is None for name in grounded)
    assert item["data"].get("manufacturer_email") is None  # no address on the page


def test_the_cache_makes_a_rerun_free(crawl, pages, store: BatchStore, local_llm):
    prompt = f"Extract the product. Run {uuid.uuid4().hex}"  # fresh cache keys
    cached = {"BATCH_LLM_CACHE_ENABLED": True}
    first = crawl_llm(crawl, local_llm, [f"{pages}/product"], PRODUCT_SCHEMA, cached,
                      prompt=prompt)
    second = crawl_llm(crawl, local_llm, [f"{pages}/product"], PRODUCT_SCHEMA, cached,
                       prompt=prompt)
    (before,), (after,) = store.iter_items(first), store.iter_items(second)
    assert before["llm_calls"] >= 1
    assert after["llm_calls"] == 0 and after["extraction"]["cache_hits"] >= 1
    assert after["data"] == before["data"]
    assert store.get_batch(second)["counters"]["llm_calls"] == 0
