"""``render_js: auto`` without a browser: what is not an app shell stays an HTTP fetch, and a
page whose structured data already answers the schema is never rendered."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from batchscraper.demo.site import ExampleSite
from batchscraper.render import app_shell_reason
from batchscraper.store import BatchStore
from tests.conftest import batch_id_from

SCHEMA = json.dumps({"type": "object", "properties": {"name": {"type": "string"},
                                                      "sku": {"type": "string"}},
                     "required": ["name"]})
SHELL = ('<html><head><script type="application/ld+json">{json}</script></head><body>'
         '<noscript>Please enable JavaScript.</noscript><div id="root"></div>'
         "<script>document.getElementById('root').textContent = 'loading';</script></body></html>")
ANSWERED = SHELL.format(json=json.dumps({"@context": "https://schema.org", "@type": "Product",
                                         "name": "Shell Product", "sku": "S-1"}))


@pytest.fixture(scope="module")
def shell_site() -> Iterator[str]:
    """One app shell page whose JSON-LD already holds the record."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = ANSWERED.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("html", "reason"), [
    ("<html><body><p>Short page.</p></body></html>", None),
    ('<html><body><div id="app"></div></body></html>',
     "app shell: 0 characters of text and an empty root <div> for a script to fill"),
    ("<html><body><noscript>This app requires JavaScript</noscript></body></html>",
     "app shell: 0 characters of text and a <noscript> asking for JavaScript"),
    ('<html><body data-reactroot=""><p>Hi</p></body></html>',
     "app shell: 2 characters of text and a JavaScript framework's marker"),
])
def test_an_app_shell_needs_a_marker_and_is_named_in_words(html: str, reason: str | None):
    assert app_shell_reason(html, 400) == reason


def test_short_pages_without_a_marker_stay_fetched(crawl, site: ExampleSite, store: BatchStore):
    urls = [site.url("/slow?delay=0.1"), site.url("/encoding/latin1")]
    result = crawl(urls=",".join(urls), schema=SCHEMA)
    slow, cafe = store.iter_items(batch_id_from(result))
    assert (slow["render_mode"], slow.get("render_reason")) == ("fetch", None)
    assert slow["status"] == "completed", slow.get("error")
    # the cafe page has no record for this schema: the browser is tried for that reason only
    assert cafe["render_reason"] in (None, "auto: EXTRACTION_FAILED after fetch")


def test_an_app_shell_whose_record_is_valid_is_not_rendered(
    crawl, shell_site: str, store: BatchStore
):
    result = crawl(urls=f"{shell_site}/p/1", schema=SCHEMA)
    [item] = store.iter_items(batch_id_from(result))
    assert item["status"] == "completed", item.get("error")
    assert (item["render_mode"], item.get("render_reason")) == ("fetch", None)
    assert item["data"] == {"name": "Shell Product", "sku": "S-1"}
