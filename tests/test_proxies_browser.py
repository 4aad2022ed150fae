"""Proxies on the browser path: real crawls, real Chromium, real proxies that count what passes.

Chromium's only way out is the egress guard; a page with a proxy renders in a
browser context whose proxy is the guard's route through that proxy (guard ->
user proxy). As in tests/test_egress.py only 127.0.0.2 is allowed: the public
site and the user's proxies live there, the canary on 127.0.0.1 must see nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from batchscraper.demo.site import ExampleSite
from batchscraper.store import BatchStore
from tests.conftest import assert_counters_match_items, batch_id_from
from tests.egress_sites import PUBLIC_ADDRESS, SCRIPTED_NAME, CountingServer, attack_hosts
from tests.proxy_server import CountingProxy, closed_port
from tests.socks_server import Socks5Proxy
from tests.test_proxies import stored_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCHEMA = json.dumps(
    {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
)
GUARDED = {"BATCH_ALLOWED_NETWORKS": f"{PUBLIC_ADDRESS}/32", "BATCH_PROXY_BENCH_SECONDS": 600}
PASSWORD = "browser-pw-8d41f0c2"  # must never appear in a stored document or a log
WAIT = [{"type": "wait", "ms": 1500}]  # the page's scripts get time to try


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[CountingServer, CountingServer]]:
    with attack_hosts() as pair:
        yield pair


def rendered(crawl, store: BatchStore, urls: list, proxy: object, **options: object) -> tuple:
    result = crawl(urls=json.dumps(urls), schema=SCHEMA, settings=GUARDED,
                   options=json.dumps({"proxy": proxy, "render_js": "always", "retries": 0,
                                       **options}))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    batch_id = batch_id_from(result)
    return batch_id, list(store.iter_items(batch_id)), result.stderr


def test_a_js_page_renders_through_a_users_proxy_and_refused_targets_never_reach_it(
    crawl, store: BatchStore, hosts: tuple[CountingServer, CountingServer]
) -> None:
    public, canary = hosts
    base = f"http://{PUBLIC_ADDRESS}:{public.server_address[1]}"
    with CountingProxy(credentials=("user", PASSWORD), host=PUBLIC_ADDRESS) as proxy:
        urls = [f"{base}/p/scripted", {"url": f"{base}/p/xhr", "actions": WAIT}]
        batch_id, items, log = rendered(crawl, store, urls, proxy.url(f"user:{PASSWORD}"))
    scripted, xhr = items
    assert scripted["status"] == "completed", scripted["error"]
    assert (scripted["render_mode"], scripted["data"]) == ("headless", {"name": SCRIPTED_NAME})
    # the proxy saw the pages, logged in, and nothing for the canary: the guard refused the
    # XHR to 127.0.0.1 before anything went to the proxy
    seen = [target for _, target in proxy.requests]
    assert f"{base}/p/scripted" in seen and f"{base}/p/xhr" in seen
    assert all(target.startswith(base) for target in seen), seen
    login = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    assert set(proxy.logins) == {login}
    assert canary.accepted == 0, canary.paths
    assert xhr["error"]["code"] == "FETCH_BLOCKED", xhr
    assert f"127.0.0.1:{public.server_address[1]}/xhr" in xhr["error"]["message"]
    assert PASSWORD not in stored_text(store, batch_id) and PASSWORD not in log
    assert store.get_batch(batch_id)["options"]["proxy"] == [proxy.url("***:***")]
    assert_counters_match_items(store, batch_id)


def test_a_js_page_renders_through_a_socks5_proxy(
    crawl, store: BatchStore, hosts: tuple[CountingServer, CountingServer]
) -> None:
    public, canary = hosts
    port = public.server_address[1]
    with Socks5Proxy(credentials=("user", PASSWORD), host=PUBLIC_ADDRESS) as proxy:
        batch_id, items, log = rendered(crawl, store, [f"http://{PUBLIC_ADDRESS}:{port}/p/scripted"],
                                        proxy.url(f"user:{PASSWORD}"))
    [item] = items
    assert item["status"] == "completed", item["error"]
    assert item["data"] == {"name": SCRIPTED_NAME}
    assert ("ipv4", PUBLIC_ADDRESS, port) in proxy.requests  # socks5://: the checked address
    assert set(proxy.logins) == {("user", PASSWORD)}
    assert canary.accepted == 0
    assert PASSWORD not in stored_text(store, batch_id) and PASSWORD not in log


def test_failing_proxies_are_benched_on_the_browser_path_and_none_left_is_proxy_failed(
    crawl, store: BatchStore, hosts: tuple[CountingServer, CountingServer]
) -> None:
    public, _ = hosts
    base = f"http://{PUBLIC_ADDRESS}:{public.server_address[1]}"
    dead = f"http://{PUBLIC_ADDRESS}:{closed_port(PUBLIC_ADDRESS)}"
    with CountingProxy(refuse=True, host=PUBLIC_ADDRESS) as refusing, \
            CountingProxy(host=PUBLIC_ADDRESS) as good:
        urls: list = [f"{base}/p/scripted?n={n}" for n in range(4)]
        urls.append({"url": f"{base}/p/scripted?n=alone", "proxy": refusing.url()})
        batch_id, items, _ = rendered(crawl, store, urls, [refusing.url(), dead, good.url()],
                                      concurrency=1)
    statuses = [(item["status"], (item["error"] or {}).get("code")) for item in items]
    assert statuses == [("completed", None)] * 4 + [("failed", "PROXY_FAILED")], statuses
    assert all(item["data"] == {"name": SCRIPTED_NAME} for item in items[:4])
    # the refusing proxy was benched at its first 407 (the URL with only it: benched
    # already, nothing sent), the dead one at its first refused connection
    assert len(refusing.requests) == 1, refusing.requests
    assert {target for _, target in good.requests} >= {f"{base}/p/scripted?n={n}"
                                                       for n in range(4)}
    assert items[4]["error"]["retryable"] is True
    assert store.get_batch(batch_id)["failures"] == {"PROXY_FAILED": 1}
    assert_counters_match_items(store, batch_id)


def test_pages_through_many_proxies_keep_their_domains_proxy_with_one_tab(
    crawl, store: BatchStore
) -> None:
    """Three domains, three proxies, one tab: each domain keeps its proxy while the browser
    switches between the proxies' contexts (idle ones kept, the oldest closed)."""
    with ExampleSite(host="127.0.0.3") as one, ExampleSite(host="127.0.0.4") as two, \
            ExampleSite(host="127.0.0.5") as three, \
            CountingProxy() as p1, CountingProxy() as p2, CountingProxy() as p3:
        bases = [site.base_url for site in (one, two, three)]
        urls = [f"{base}/app-shell/{60 + n}" for n in range(3) for base in bases]
        result = crawl(urls=json.dumps(urls), schema=SCHEMA,
                       settings={"BATCH_BROWSER_MAX_PAGES": 1},
                       options=json.dumps({"proxy": [p.url() for p in (p1, p2, p3)],
                                           "render_js": "always", "retries": 0,
                                           "concurrency": 1}))
    assert result.returncode == 0, result.stderr[-3000:]
    items = list(store.iter_items(batch_id_from(result)))
    assert [(i["status"], i["render_mode"]) for i in items] == [("completed", "headless")] * 9
    assert [i["data"]["name"] for i in items[:3]] == ["Product 60"] * 3
    seen = [{target.split("/app-shell")[0] for _, target in p.requests} for p in (p1, p2, p3)]
    assert sorted(map(sorted, seen)) == sorted([base] for base in bases), seen
