"""The browser's egress guard, attacked the way an outside tester did (issue 20, findings 1-2).

A real crawl with real Chromium. Only the attacker's "public" host (127.0.0.2)
is allowed; every page tries one way to reach the canary on 127.0.0.1 —
redirects, JS navigation, meta refresh, popups, WebSockets, iframes, fetch and
XHR, workers, DNS rebinding. The canary must accept no connection at all, its
secret must appear in no record, and each page whose own request was refused
fails with FETCH_BLOCKED naming the refused URL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from batchscraper.store import BatchStore
from tests.conftest import batch_id_from
from tests.egress_sites import (
    PUBLIC_ADDRESS,
    PUBLIC_NAME,
    REBINDING_NAME,
    SECRET,
    CountingServer,
    attack_hosts,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCHEMA = json.dumps(
    {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
)
GUARDED = {
    "BATCH_ALLOWED_NETWORKS": f"{PUBLIC_ADDRESS}/32",
    "BATCH_EGRESS_RESOLVER": "tests.egress_sites.rebinding_resolver",
}
# attack page -> the canary URL its refused request names
ATTACKS = {
    "/p/js-redirect": "/latest/meta-data/",
    "/p/redirect": "/top-level",
    "/p/meta-refresh": "/meta",
    "/p/popup": "/popup",
    "/p/websocket": "/ws",
    "/p/iframe": "/iframe",
    "/p/redirected-fetch": "/fetch",
    "/p/xhr": "/xhr",
    "/p/worker": "/worker",
}
WAIT = [{"type": "wait", "ms": 1500}]  # the page's scripts get time to try


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[CountingServer, CountingServer]]:
    with attack_hosts() as pair:
        yield pair


def run_attacks(crawl, store: BatchStore, urls: list[dict], render_js: str) -> list[dict]:
    result = crawl(urls=json.dumps(urls), schema=SCHEMA, render_js=render_js, settings=GUARDED)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return list(store.iter_items(batch_id_from(result)))


def assert_refused(item: dict, canary: CountingServer, port: int, path: str) -> None:
    assert item["status"] == "failed", (item["url"], item["status"], item.get("data"))
    assert item["error"]["code"] == "FETCH_BLOCKED", (item["url"], item["error"])
    assert f"127.0.0.1:{port}" in item["error"]["message"], item["error"]
    assert path in item["error"]["message"] or path == "/ws", item["error"]
    assert item["data"] is None


def test_no_browser_request_reaches_an_address_the_policy_refuses(
    crawl, store: BatchStore, hosts: tuple[CountingServer, CountingServer]
):
    public, canary = hosts
    port = public.server_address[1]
    base = f"http://{PUBLIC_ADDRESS}:{port}"
    urls = [{"url": base + path, "actions": WAIT} for path in [*ATTACKS, "/p/shared-worker"]]
    urls.append({"url": base + "/p/harmless"})
    stored = run_attacks(crawl, store, urls, "always")
    items = {item["url"].removeprefix(base): item for item in stored}

    assert canary.accepted == 0, canary.paths
    for item in items.values():
        assert SECRET not in json.dumps(item, default=str), item["url"]
    for path, refused in ATTACKS.items():
        assert_refused(items[path], canary, port, refused)
    # a shared worker's requests are not the page's: refused all the same (the canary saw
    # nothing), but not attributed to the item
    assert items["/p/shared-worker"]["error"] is None or (
        items["/p/shared-worker"]["error"]["code"] == "FETCH_BLOCKED"
    )
    harmless = items["/p/harmless"]
    assert harmless["status"] == "completed", harmless["error"]
    assert harmless["data"] == {"name": PUBLIC_NAME}
    assert f"{base}/p/harmless" in [f"{base}{p}" for p in public.paths]


def test_auto_mode_escalation_cannot_be_redirected_to_cloud_metadata(
    crawl, store: BatchStore, hosts: tuple[CountingServer, CountingServer]
):
    """The critical finding: a page without the wanted data escalates to Chromium by itself."""
    public, canary = hosts
    port = public.server_address[1]
    base = f"http://{PUBLIC_ADDRESS}:{port}"
    schema = {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}
    result = crawl(
        urls=json.dumps([{"url": f"{base}/p/js-redirect", "actions": WAIT}]),
        schema=json.dumps(schema),
        settings=GUARDED,
    )
    [item] = store.iter_items(batch_id_from(result))
    assert item["render_mode"] == "headless", item  # escalated: auto mode
    assert_refused(item, canary, port, "/latest/meta-data/")
    assert canary.accepted == 0, canary.paths
    assert SECRET not in json.dumps(item, default=str)


def test_dns_rebinding_cannot_reach_the_internal_address(
    crawl, store: BatchStore, hosts: tuple[CountingServer, CountingServer]
):
    """The guard connects to the address it checked: a name that rebinds gets nowhere.

    ``rebind.test`` answers 127.0.0.2 and 127.0.0.1 in turn (the canary has the
    same port); Chromium itself resolves nothing.
    """
    public, canary = hosts
    port = public.server_address[1]
    url = f"http://{REBINDING_NAME}:{port}/p/rebinding"
    [item] = run_attacks(crawl, store, [{"url": url, "actions": WAIT}], "always")
    assert canary.accepted == 0, canary.paths
    assert item["error"] is not None and item["error"]["code"] == "FETCH_BLOCKED", item
    assert REBINDING_NAME in item["error"]["message"]


def test_a_tab_reused_after_a_hostile_page_does_not_carry_its_requests(
    crawl, store: BatchStore, hosts: tuple[CountingServer, CountingServer]
):
    """One tab: a page that starts fetching the canary after its download, then a slow
    harmless page in the same tab, which must not be blamed (the idle tab left its page)."""
    public, canary = hosts
    base = f"http://{PUBLIC_ADDRESS}:{public.server_address[1]}"
    urls = [f"{base}/p/interval", f"{base}/p/slow-harmless"]
    result = crawl(
        urls=json.dumps(urls), schema=SCHEMA, render_js="always", concurrency=1,
        settings={**GUARDED, "BATCH_BROWSER_MAX_PAGES": 1},
    )
    first, harmless = store.iter_items(batch_id_from(result))
    assert first["status"] == "completed", first["error"]  # its download ended in time
    assert harmless["status"] == "completed", harmless["error"]
    assert harmless["data"] == {"name": PUBLIC_NAME}
    assert canary.accepted == 0, canary.paths
