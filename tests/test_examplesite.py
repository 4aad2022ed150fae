"""Tests for the local example site (real HTTP on 127.0.0.1 via urllib)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from batchscraper.demo.site import (
    ExampleSite,
    article_expected,
    product_expected,
)
from tests.hostile_site import HostileSite

LD_RE = re.compile(r'<script type="application/ld\+json">(.*?)</script>', re.S)
ROOT = Path(__file__).resolve().parents[1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Make urllib report 3xx responses instead of following them."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_FOLLOW = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_NO_FOLLOW = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def fetch(url: str, *, follow: bool = True, method: str = "GET") -> tuple[int, Message, bytes]:
    """Return (status, headers, body) for ``url``; HTTP errors are returned, not raised."""
    opener = _FOLLOW if follow else _NO_FOLLOW
    request = urllib.request.Request(url, method=method)
    try:
        with opener.open(request, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def json_ld(body: bytes) -> list[dict[str, Any]]:
    """All JSON-LD blocks found in an HTML body."""
    return [json.loads(block) for block in LD_RE.findall(body.decode("utf-8"))]


@pytest.fixture(scope="module")
def site() -> Iterator[ExampleSite]:
    with ExampleSite() as running:
        yield running


def test_lifecycle_and_urls() -> None:
    example = ExampleSite()
    with pytest.raises(RuntimeError):
        _ = example.base_url
    with example as running:
        assert running is example
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", running.base_url)
        assert running.base_url.rsplit(":", 1)[1] != "0"
        assert running.url("/products/1") == running.base_url + "/products/1"
        assert running.url("products/1") == running.base_url + "/products/1"
        assert running.start() is running  # already started: no-op
        assert fetch(running.url("/"))[0] == 200
    example.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = example.base_url


def test_product_expected_is_deterministic() -> None:
    assert product_expected(1) == {
        "name": "Product 1",
        "sku": "SKU-00001",
        "brand": product_expected(1)["brand"],
        "price": 8.7,
        "currency": "USD",
        "in_stock": True,
    }
    assert product_expected(7)["in_stock"] is False
    assert product_expected(12345)["sku"] == "SKU-12345"
    assert product_expected(3) == product_expected(3)
    assert len({product_expected(n)["brand"] for n in range(1, 20)}) > 1


@pytest.mark.parametrize("n", [1, 7, 42, 2024, 100000])
def test_product_page_jsonld(site: ExampleSite, n: int) -> None:
    status, headers, body = fetch(site.url(f"/products/{n}"))
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert int(headers["Content-Length"]) == len(body)
    assert 30_000 <= len(body) <= 70_000
    expected = product_expected(n)
    (ld,) = json_ld(body)
    assert ld["@type"] == "Product"
    assert ld["name"] == expected["name"]
    assert ld["sku"] == expected["sku"]
    assert ld["brand"] == {"@type": "Brand", "name": expected["brand"]}
    assert ld["description"]
    offer = ld["offers"]
    assert offer["@type"] == "Offer"
    assert offer["price"] == f"{expected['price']:.2f}"
    assert float(offer["price"]) == expected["price"]
    assert offer["priceCurrency"] == "USD"
    stock = "InStock" if expected["in_stock"] else "OutOfStock"
    assert offer["availability"] == f"https://schema.org/{stock}"
    text = body.decode()
    assert f"<h1>{expected['name']}</h1>" in text
    assert f"${expected['price']:,.2f}" in text
    assert text.count("<a href=") > 50 and "<style>" in text and "<footer>" in text


def test_product_pages_differ_and_are_stable(site: ExampleSite) -> None:
    first = fetch(site.url("/products/10"))[2]
    assert first == fetch(site.url("/products/10"))[2]
    assert first != fetch(site.url("/products/11"))[2]


def test_plain_page_has_only_opengraph(site: ExampleSite) -> None:
    status, _, body = fetch(site.url("/plain/3"))
    text = body.decode()
    assert status == 200
    assert 30_000 <= len(body) <= 70_000
    assert "application/ld+json" not in text
    assert "itemprop" not in text and "itemscope" not in text
    assert '<meta property="og:title" content="Plain 3">' in text
    assert '<meta property="og:type" content="product">' in text
    assert 'property="og:description"' in text
    assert "<h1>Plain 3</h1>" in text


def test_microdata_page(site: ExampleSite) -> None:
    status, _, body = fetch(site.url("/microdata/5"))
    text = body.decode()
    expected = product_expected(5)
    assert status == 200
    assert 30_000 <= len(body) <= 70_000
    assert "application/ld+json" not in text
    assert 'itemscope itemtype="https://schema.org/Product"' in text
    assert f'<h1 itemprop="name">{expected["name"]}</h1>' in text
    assert f'<span itemprop="sku">{expected["sku"]}</span>' in text
    assert f'itemprop="price" content="{expected["price"]:.2f}"' in text
    assert '<meta itemprop="priceCurrency" content="USD">' in text


@pytest.mark.parametrize("code", [404, 500, 503, 200])
def test_status_route(site: ExampleSite, code: int) -> None:
    status, headers, body = fetch(site.url(f"/status/{code}"))
    assert status == code
    assert int(headers["Content-Length"]) == len(body)
    assert f"Status {code}" in body.decode()


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/nope", 404),
        ("/products/0", 404),
        ("/products/100001", 404),
        ("/products/abc", 404),
        ("/status/99", 400),
        ("/slow?delay=abc", 400),
        ("/products/1/", 404),
    ],
)
def test_unknown_and_invalid_routes(site: ExampleSite, path: str, code: int) -> None:
    assert fetch(site.url(path))[0] == code


def test_flaky_sequence_and_retry_after(site: ExampleSite) -> None:
    url = site.url("/flaky/seq-a?fail=2&code=503&retry_after=1")
    results = [fetch(url) for _ in range(4)]
    assert [status for status, _, _ in results] == [503, 503, 200, 200]
    assert results[0][1]["Retry-After"] == "1"
    assert results[1][1]["Retry-After"] == "1"
    assert results[2][1]["Retry-After"] is None
    assert json_ld(results[2][2])[0]["name"] == "Product 1"
    assert site.hits("/flaky/seq-a") == 4
    # A different key has its own counter; no Retry-After unless asked for.
    status, headers, _ = fetch(site.url("/flaky/seq-b?fail=1&code=429"))
    assert (status, headers["Retry-After"]) == (429, None)
    assert fetch(site.url("/flaky/seq-b?fail=1&code=429"))[0] == 200


def test_redirect_chain(site: ExampleSite) -> None:
    status, headers, _ = fetch(site.url("/redirect/2"), follow=False)
    assert (status, headers["Location"]) == (302, "/redirect/1")
    status, headers, _ = fetch(site.url("/redirect/0"), follow=False)
    assert (status, headers["Location"]) == (302, "/products/1")
    before = site.hits("/redirect/1")
    status, _, body = fetch(site.url("/redirect/3"))
    assert status == 200
    assert json_ld(body)[0]["name"] == "Product 1"
    assert site.hits("/redirect/1") == before + 1


def test_redirect_loop(site: ExampleSite) -> None:
    status, headers, _ = fetch(site.url("/redirect-loop"), follow=False)
    assert (status, headers["Location"]) == (302, "/redirect-loop")
    assert fetch(site.url("/redirect-loop"))[0] == 302  # urllib gives up on the loop
    assert site.hits("/redirect-loop") > 2


def test_hits_counter_is_thread_safe(site: ExampleSite) -> None:
    url = site.url("/counted-path")
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda i: fetch(f"{url}?i={i}")[0], range(40)))
    assert statuses == [404] * 40
    assert site.hits("/counted-path") == 40
    assert site.hits("/counted-path?i=3") == 40
    assert site.hits(url) == 40
    assert site.hits("/never-requested") == 0


def test_slow(site: ExampleSite) -> None:
    started = time.monotonic()
    status, _, body = fetch(site.url("/slow?delay=0.2"))
    assert time.monotonic() - started >= 0.2
    assert status == 200
    assert len(body) < 5_000
    assert json_ld(body)[0]["sku"] == "SKU-00001"


def test_huge_is_exact_and_valid() -> None:
    with HostileSite() as site:
        status, headers, body = fetch(site.url("/huge?mb=1"))
        head = fetch(site.url("/huge?mb=0.3"), method="HEAD")
    assert status == 200
    assert int(headers["Content-Length"]) == len(body) == 1024 * 1024
    assert body.startswith(b"<!DOCTYPE html>")
    assert body.endswith(b"</html>\n")
    status, headers, body = head
    assert (status, headers["Content-Length"], body) == (200, str(int(0.3 * 1024 * 1024)), b"")


def test_the_demo_serves_no_hostile_pages(site: ExampleSite) -> None:
    assert fetch(site.url("/huge?mb=1"))[0] == 404
    assert fetch(site.url("/hostile/gzip-bomb"))[0] == 404


def test_binary_routes(site: ExampleSite) -> None:
    status, headers, body = fetch(site.url("/binary"))
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert len(body) == 64 * 1024
    assert body == fetch(site.url("/binary"))[2]
    assert len(set(body)) > 200
    status, headers, body = fetch(site.url("/binary-as-html"))
    assert headers["Content-Type"].startswith("text/html")
    assert body.startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")


def test_app_shell_has_no_visible_content(site: ExampleSite) -> None:
    status, _, body = fetch(site.url("/app-shell/4"))
    text = body.decode()
    assert status == 200
    assert '<div id="root"></div>' in text
    assert "<noscript>You need to enable JavaScript to run this app.</noscript>" in text
    assert "setTimeout(" in text and ",50);" in text
    assert not LD_RE.search(text)  # JSON-LD only appears once the script runs
    assert "Product 4" in text and "application/ld+json" in text
    visible = re.sub(r"<script.*?</script>|<noscript>.*?</noscript>|<[^>]+>", "", text, flags=re.S)
    assert len(visible.strip()) < 20


def test_article_page(site: ExampleSite) -> None:
    for n in (1, 8, 777):
        status, _, body = fetch(site.url(f"/articles/{n}"))
        assert status == 200
        assert 20_000 <= len(body) <= 40_000
        expected = article_expected(n)
        (ld,) = json_ld(body)
        assert ld["@type"] == "NewsArticle"
        assert ld["headline"] == expected["headline"] == f"Article {n}"
        assert ld["author"] == {"@type": "Person", "name": expected["author"]}
        assert ld["datePublished"] == expected["date_published"]
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", expected["date_published"])
        assert f"<h1>Article {n}</h1>" in body.decode()


def test_list_page(site: ExampleSite) -> None:
    status, _, body = fetch(site.url("/list/2?count=5"))
    text = body.decode()
    assert status == 200
    assert text.count('class="card"') == 5
    (ld,) = json_ld(body)
    assert ld["@type"] == "ItemList"
    names = [element["item"]["name"] for element in ld["itemListElement"]]
    assert names == [f"Product {n}" for n in range(6, 11)]
    for name in names:
        assert name in text
    assert fetch(site.url("/list/1"))[2].decode().count('class="card"') == 10


def test_encodings(site: ExampleSite) -> None:
    status, headers, body = fetch(site.url("/encoding/latin1"))
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=iso-8859-1"
    assert "Café crème".encode("latin-1") in body
    assert "Café crème".encode() not in body
    status, headers, body = fetch(site.url("/encoding/mislabelled"))
    assert headers["Content-Type"] == "text/html; charset=iso-8859-1"
    assert "Café crème".encode() in body


def test_index_links(site: ExampleSite) -> None:
    status, _, body = fetch(site.url("/"))
    assert status == 200
    for path in ("/products/1", "/plain/1", "/microdata/1", "/articles/1", "/app-shell/1"):
        assert f'href="{path}"' in body.decode()


def visible_prices(body: bytes) -> list[str]:
    """The prices a reader sees on a page (its text outside tags, scripts and styles)."""
    text = re.sub(r"<script.*?</script>|<style.*?</style>|<[^>]+>", " ", body.decode(), flags=re.S)
    return re.findall(r"\$[0-9][0-9,]*\.[0-9]{2}", text)


def test_a_repriced_product_shows_its_new_price_in_data_and_text(site: ExampleSite) -> None:
    listed = product_expected(3)
    with ExampleSite() as changing:
        first_tag = fetch(changing.url("/etag/3"))[1]["ETag"]
        changing.reprice(3, 17.49)
        status, _, body = fetch(changing.url("/products/3"))
        assert status == 200
        (ld,) = json_ld(body)
        assert (ld["offers"]["price"], ld["offers"]["priceCurrency"]) == ("17.49", "USD")
        assert visible_prices(body) == ["$17.49"]
        microdata = fetch(changing.url("/microdata/3"))[2]
        assert 'itemprop="price" content="17.49">$17.49</span>' in microdata.decode()
        assert visible_prices(fetch(changing.url("/plain/3"))[2]) == ["$17.49"]
        assert changing.product(3) == {**listed, "price": 17.49}
        # a client holding the old ETag gets the new page, not a 304
        request = urllib.request.Request(changing.url("/etag/3"),
                                         headers={"If-None-Match": first_tag})
        with _FOLLOW.open(request, timeout=10) as answer:
            assert answer.status == 200
            assert answer.headers["ETag"] != first_tag
            assert json_ld(answer.read())[0]["offers"]["price"] == "17.49"
        # other products, and every other site, still show the listed prices
        assert changing.product(4) == product_expected(4)
        assert visible_prices(fetch(changing.url("/products/4"))[2]) == [
            f"${product_expected(4)['price']:,.2f}"]
    assert visible_prices(fetch(site.url("/products/3"))[2]) == [f"${listed['price']:,.2f}"]


def test_a_product_repriced_to_none_shows_no_price(site: ExampleSite) -> None:
    with ExampleSite() as changing:
        changing.reprice(5, None)
        for path in ("/products/5", "/microdata/5", "/plain/5"):
            status, _, body = fetch(changing.url(path))
            assert status == 200, path
            assert visible_prices(body) == [], path
            assert 'class="price"' not in body.decode() and "priceCurrency" not in body.decode()
        (ld,) = json_ld(fetch(changing.url("/products/5"))[2])
        assert ld["offers"] == {"@type": "Offer", "availability": "https://schema.org/InStock"}
        assert ld["name"] == "Product 5"
        assert changing.product(5) == {**product_expected(5), "price": None, "currency": None}


def test_a_page_taken_down_answers_404_or_410(site: ExampleSite) -> None:
    with ExampleSite() as changing:
        assert changing.take_down(2) == "/products/2"
        assert changing.take_down(changing.url("/articles/4"), status=410) == "/articles/4"
        status, _, body = fetch(changing.url("/products/2"))
        assert (status, json_ld(body)) == (404, [])
        status, _, body = fetch(changing.url("/articles/4?page=1"))
        assert status == 410 and "410 Gone" in body.decode()
        assert changing.hits("/products/2") == 1
        # only those paths: the product's other pages and other products stay up
        assert fetch(changing.url("/plain/2"))[0] == 200
        assert json_ld(fetch(changing.url("/products/1"))[2])[0]["name"] == "Product 1"
    assert fetch(site.url("/products/2"))[0] == 200


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.reprice(0, 1.0), "no product 0"),
        (lambda s: s.reprice(1, -1), "price: a number, 0 or more, or None; got -1"),
        (lambda s: s.reprice(1, "9.99"), "got '9.99'"),
        (lambda s: s.reprice(1, True), "got True"),
        (lambda s: s.reprice(1, float("nan")), "got nan"),
        (lambda s: s.take_down(1, status=500), "status: one of [404, 410], got 500"),
        (lambda s: s.take_down("products/1"), "a path starting with /"),
    ],
)
def test_bad_changes_are_refused_and_change_nothing(change: Any, message: str) -> None:
    with ExampleSite() as changing:
        before = fetch(changing.url("/products/1"))[2]
        with pytest.raises(ValueError, match=re.escape(message)):
            change(changing)
        assert changing.product(1) == product_expected(1)
        assert fetch(changing.url("/products/1"))[2] == before


def test_main_serves_quietly() -> None:
    command = [sys.executable, "-m", "batchscraper.demo.site", "--port", "0"]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        base_url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        assert fetch(base_url + "/products/2")[0] == 200
        assert fetch(base_url + "/missing")[0] == 404
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr.read() == ""
