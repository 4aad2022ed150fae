"""The fetch options (proxy, PDF pages, max_age) through the HTTP API in a real Scrapyd."""

from __future__ import annotations

import json

import pytest

from batchscraper.demo.site import ExampleSite
from batchscraper.store import BatchStore
from tests.api_fixtures import (  # noqa: F401  (fixtures)
    ScrapydServer,
    assert_error,
    assert_matches,
    openapi_fixture,
    scrapyd_fixture,
)
from tests.conftest import assert_counters_match_items
from tests.proxy_server import CountingProxy
from tests.socks_server import Socks5Proxy
from tests.test_api import submit, wait_final

pytestmark = pytest.mark.slow

FIELDS = [{"field": "name", "type": "string", "required": True},
          {"field": "price", "type": "number"}]
PASSWORD = "api-pw-51d0c9e2"


def test_proxy_credentials_are_never_served_nor_stored_in_clear(
    scrapyd: ScrapydServer, openapi: dict, site: ExampleSite, store: BatchStore
) -> None:
    with CountingProxy(credentials=("api", PASSWORD)) as proxy, \
            Socks5Proxy(credentials=("api", PASSWORD)) as socks:
        urls: list = [site.url(f"/products/{n}") for n in (31, 32)]
        urls.append({"url": site.url("/products/33"), "proxy": proxy.url(f"api:{PASSWORD}")})
        urls.append({"url": site.url("/products/34"), "proxy": socks.url(f"api:{PASSWORD}")})
        body = {"urls": urls, "fields": FIELDS,
                "options": {"proxy": [proxy.url(f"api:{PASSWORD}")], "retries": 0}}
        batch_id = submit(scrapyd, body)["batch_id"]
        final = wait_final(scrapyd, batch_id)
    assert final["status"] == "completed", final
    assert len(proxy.requests) == 3
    assert len(socks.requests) == 1 and socks.logins == [("api", PASSWORD)]
    served = [scrapyd.call("GET", path).body.decode() for path in (
        f"/batches/{batch_id}", f"/batches/{batch_id}/items", "/batches")]
    detail = json.loads(served[0])
    assert_matches(openapi, "BatchDetail", detail)
    assert detail["options"]["proxy"] == [proxy.url("***:***")]
    items = json.loads(served[1])["items"]
    assert items[3]["request"]["proxy"] == [socks.url("***:***")]
    for text in (*served, json.dumps(store.get_batch(batch_id), default=str),
                 json.dumps(list(store.iter_items(batch_id)), default=str), scrapyd.log_tail()):
        assert PASSWORD not in text
    assert_counters_match_items(store, batch_id)


@pytest.mark.parametrize(
    ("options", "url_proxy", "code", "says"),
    [
        ({"proxy": f"socks4://u:{PASSWORD}@127.0.0.1:1080"}, None, "INVALID_OPTION", "SOCKS4"),
        ({"proxy": "socks://127.0.0.1:1080"}, None, "INVALID_OPTION", "say which SOCKS"),
        ({}, f"socks5://{'u' * 256}:{PASSWORD}@127.0.0.1:1080", "INVALID_URL", "255 bytes"),
        ({}, "gopher://127.0.0.1:70", "INVALID_URL", "scheme must be one of"),
    ],
)
def test_bad_proxy_option_is_a_422_and_stores_nothing(
    scrapyd: ScrapydServer, openapi: dict, store: BatchStore,
    options: dict, url_proxy: str | None, code: str, says: str,
) -> None:
    before = store.batches.count_documents({}), store.db["proxy_secrets"].count_documents({})
    url: object = {"url": "https://example.com/", "proxy": url_proxy} if url_proxy else (
        "https://example.com/")
    body = {"urls": [url], "fields": FIELDS, "options": options}
    error = assert_error(openapi, scrapyd.call("POST", "/batches", body), 422, code)
    assert says in json.dumps(error) and PASSWORD not in json.dumps(error)
    after = store.batches.count_documents({}), store.db["proxy_secrets"].count_documents({})
    assert after == before


def test_pdf_pages_are_served_with_their_document_information(
    scrapyd: ScrapydServer, openapi: dict, site: ExampleSite, store: BatchStore
) -> None:
    urls = [site.url("/pdf/5"), site.url("/pdf-broken/6")]
    batch_id = submit(scrapyd, {"urls": urls, "fields": FIELDS,
                                "options": {"retries": 0}})["batch_id"]
    assert wait_final(scrapyd, batch_id)["status"] == "partial"
    items = scrapyd.call("GET", f"/batches/{batch_id}/items").json()["items"]
    for item in items:
        assert_matches(openapi, "ItemRecord", item)
    assert (items[0]["render_mode"], items[0]["pdf"]["title"]) == ("pdf", "Product 5")
    assert items[0]["data"]["name"] == "Product 5"
    assert items[1]["error"]["code"] == "PDF_UNREADABLE"
    assert_counters_match_items(store, batch_id)
