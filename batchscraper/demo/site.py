"""A local example shop served over real HTTP on 127.0.0.1, for the demo and the tests.

Pages are deterministic functions of the URL, so tests can compare scraped records with
:func:`product_expected` / :func:`article_expected`.  Between two runs a site can change like a
real shop: :meth:`ExampleSite.reprice` gives a product another price (or none) and
:meth:`ExampleSite.take_down` removes a page (404 or 410); :meth:`ExampleSite.product` is then
what that site's product pages describe.  Serve by hand with
``python -m batchscraper.demo.site --port 8000``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import html
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Literal, TypedDict
from urllib.parse import parse_qs, urlsplit

from batchscraper.demo.pdf import encrypted_pdf, text_pdf

logger = logging.getLogger(__name__)

MAX_N = 100_000
BRANDS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark")
AUTHORS = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Edsger Dijkstra")
HTML_TYPE = "text/html; charset=utf-8"
LISTED: Final = "listed"  # a product page's price: the one product_expected lists
GONE_STATUSES = (404, 410)
Price = float | None | Literal["listed"]  # another price; None: the page shows no price
_W = re.compile(r"\w+").findall
_WORDS = _W("""durable lightweight premium compact ergonomic versatile reliable
modern stainless waterproof wireless portable sleek robust quiet powerful design finish battery
handle frame material kitchen travel office garden outdoor everyday family studio offers provides
features delivers combines ensures includes supports keeps makes with for and the a of every""")
_RNG = random.Random(0)
_SENTENCES = tuple(
    " ".join(_RNG.choices(_WORDS, k=_RNG.randint(8, 20))).capitalize() + "." for _ in range(400)
)
_BINARY = random.Random(20240501).randbytes(64 * 1024)
_STYLE = (
    "<style>\n:root{--accent:#c0392b;--bg:#fafafa}body{font-family:system-ui,sans-serif;"
    "margin:0;background:var(--bg);color:#222}header nav ul{display:flex;flex-wrap:wrap;"
    "list-style:none;gap:.5rem}main{max-width:960px;margin:auto;padding:1rem}.price{"
    "font-size:1.6rem;color:var(--accent)}.card{border:1px solid #ddd;padding:.5rem}"
    "footer{background:#222;color:#eee;padding:2rem}footer a{color:#9cf}\n</style>\n"
)
_HEADER = (
    '<header>\n<a class="logo" href="/">Example Shop</a>\n<nav>\n<ul>\n'
    + "".join(
        f'<li><a href="/category/{c.lower()}/{s.lower()}">{c} &ndash; {s}</a></li>\n'
        for c in _W("Kitchen Garden Office Outdoor Travel Audio Lighting Tools Sports Toys Books")
        for s in _W("New Popular Sale Premium Budget Gifts Bundles Used Outlet")
    )
    + "</ul>\n</nav>\n</header>\n"
)
_FOOTER = (
    "<footer>\n<ul>\n"
    + "".join(
        f'<li><a href="/help/{t.lower()}">{t}</a></li>\n'
        for t in _W(
            "About Careers Press Contact Shipping Returns Warranty Privacy Terms Cookies Sitemap"
        )
    )
    + "</ul>\n<p>&copy; 2024 Example Shop Ltd. All prices include VAT.</p>\n</footer>\n"
)
_SCRIPTS = (
    "<script>\nwindow.dataLayer=window.dataLayer||[];function track(e,d){"
    "window.dataLayer.push(Object.assign({event:e},d||{}));}track('page_view');\n</script>"
    "\n<script>\ndocument.addEventListener('click',function(ev){var t=ev.target;if(t&&t."
    "matches&&t.matches('button.add')){track('add_to_cart',{sku:t.dataset.sku});}});\n"
    "</script>\n"
)


class Product(TypedDict):
    """What a product's pages say (the record a batch should extract from them)."""

    name: str
    sku: str
    brand: str
    price: float | None
    currency: str | None
    in_stock: bool


class Article(TypedDict):
    headline: str
    author: str
    date_published: str  # ISO date


def product_expected(n: int) -> Product:
    """Return the product record that the pages for product ``n`` describe."""
    return {
        "name": f"Product {n}",
        "sku": f"SKU-{n:05d}",
        "brand": BRANDS[n % len(BRANDS)],
        "price": round(5 + (n * 37 % 9500) / 10, 2),
        "currency": "USD",
        "in_stock": n % 7 != 0,
    }


def article_expected(n: int) -> Article:
    """Return the headline, author and ISO publication date of article ``n``."""
    published = date(2020, 1, 1) + timedelta(days=n * 97 % 1800)
    return {
        "headline": f"Article {n}",
        "author": AUTHORS[n % len(AUTHORS)],
        "date_published": published.isoformat(),
    }


def _short_description(n: int) -> str:
    """Short summary used in meta tags and JSON-LD."""
    return f"Product {n} is built to last. " + " ".join(random.Random(n).choices(_SENTENCES, k=2))


def _paragraphs(seed: int, target: int) -> str:
    """Deterministic ``<p>`` blocks seeded by ``seed`` totalling about ``target`` characters."""
    rng, parts, size = random.Random(seed * 7919 + 1), [], 0
    while size < target:
        parts.append("<p>" + " ".join(rng.choices(_SENTENCES, k=rng.randint(4, 9))) + "</p>\n")
        size += len(parts[-1])
    return "".join(parts)


def ld_script(data: Mapping[str, object]) -> str:
    """Serialise ``data`` as a JSON-LD script tag, safe to embed in HTML."""
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return f'<script type="application/ld+json">{payload}</script>\n'


def _layout(title: str, main: str, head_extra: str = "") -> bytes:
    """Wrap ``main`` in the shared page chrome (nav, styles, scripts, footer)."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)} | Example Shop</title>\n{_STYLE}{head_extra}</head>\n"
        f"<body>\n{_HEADER}<main>\n{main}</main>\n{_FOOTER}{_SCRIPTS}</body>\n</html>\n"
    ).encode()


def _priced(n: int, price: Price) -> Product:
    """Product ``n``'s record at ``price`` (None: no price, so no currency either)."""
    record = product_expected(n)
    if price is None:
        record["price"] = record["currency"] = None
    elif price != LISTED:
        record["price"] = price
    return record


def _availability(product: Product) -> str:
    return "https://schema.org/" + ("InStock" if product["in_stock"] else "OutOfStock")


def _product_ld(n: int, price: Price = LISTED) -> dict[str, object]:
    """schema.org Product JSON-LD for product ``n`` (its Offer without a price when None)."""
    e = _priced(n, price)
    offer: dict[str, str | None] = {"@type": "Offer"}
    if e["price"] is not None:
        offer.update(price=f"{e['price']:.2f}", priceCurrency=e["currency"])
    offer["availability"] = _availability(e)
    return {
        "@context": "https://schema.org",
        "@type": "Product",
        "name": e["name"],
        "sku": e["sku"],
        "brand": {"@type": "Brand", "name": e["brand"]},
        "description": _short_description(n),
        "offers": offer,
    }


@functools.lru_cache(maxsize=512)
def product_page(n: int, variant: str = "jsonld", price: Price = LISTED) -> bytes:
    """Product page; variant ``jsonld``, ``plain`` (OpenGraph only), ``microdata`` or ``small``.

    ``price``: shown instead of the listed one, in the structured data and the visible text
    alike; None: the page shows no price anywhere.
    """
    e, ld = _priced(n, price), _product_ld(n, price)
    name = f"Plain {n}" if variant == "plain" else e["name"]
    shown, sku = "" if e["price"] is None else f"${e['price']:,.2f}", e["sku"]
    shown_p = f'<p class="price">{shown}</p>\n' if shown else ""
    head = ld_script(ld) if variant in ("jsonld", "small") else ""
    if variant == "small":
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{name}'
            f"</title>\n{head}</head>\n<body><h1>{name}</h1>\n{shown_p}</body></html>\n"
        ).encode()
    stock = "In stock" if e["in_stock"] else "Out of stock"
    body = _paragraphs(n, 22_000 + n * 7919 % 28_000)
    if variant == "plain":
        desc = html.escape(_short_description(n))
        head = (
            f'<meta property="og:title" content="{name}">\n<meta property="og:description" '
            f'content="{desc}">\n<meta property="og:type" content="product">\n'
        )
    main = (
        f'<nav class="breadcrumbs"><a href="/">Home</a> &rsaquo; '
        f'<a href="/list/{n % 50 + 1}">Catalogue</a> &rsaquo; {name}</nav>\n'
    )
    if variant == "microdata":
        main += (
            f'<article itemscope itemtype="https://schema.org/Product">\n'
            f'<h1 itemprop="name">{name}</h1>\n<p>SKU: <span itemprop="sku">{sku}</span></p>\n'
            f'<p>Brand: <span itemprop="brand">{e["brand"]}</span></p>\n'
            '<div itemprop="offers" itemscope itemtype="https://schema.org/Offer">\n'
            + (f'<span class="price" itemprop="price" content="{e["price"]:.2f}">{shown}</span>\n'
               '<meta itemprop="priceCurrency" content="USD">\n' if shown else "")
            + '<link itemprop="availability" '
            f'href="{_availability(e)}"><span>{stock}</span>\n</div>\n'
            f'<div itemprop="description">\n{body}</div>\n</article>\n'
        )
    else:
        main += (
            f'<article class="product">\n<h1>{name}</h1>\n<p class="sku">SKU: {sku}</p>\n'
            f'<p class="brand">Brand: {e["brand"]}</p>\n{shown_p}'
            f'<p class="stock">{stock}</p>\n<button class="add" data-sku="{sku}">Add to cart'
            f'</button>\n<section class="description">\n<h2>Description</h2>\n{body}</section>\n'
            "</article>\n"
        )
    return _layout(name, main, head)


@functools.lru_cache(maxsize=256)
def article_page(n: int) -> bytes:
    """News article page (20-40 KB) with NewsArticle JSON-LD."""
    a = article_expected(n)
    body, day = _paragraphs(n + MAX_N, 11_500 + n * 7919 % 15_000), a["date_published"]
    ld = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": a["headline"],
        "author": {"@type": "Person", "name": a["author"]},
        "datePublished": day,
        "publisher": {"@type": "Organization", "name": "Example News"},
        "description": _short_description(n),
    }
    main = (
        f'<article class="news">\n<h1>{a["headline"]}</h1>\n<p class="byline">By <span '
        f'class="author">{a["author"]}</span> on <time datetime="{day}">{day}</time></p>\n'
        f'<div class="article-body">\n{body}</div>\n</article>\n'
    )
    return _layout(a["headline"], main, ld_script(ld))


@functools.lru_cache(maxsize=256)
def list_page(n: int, count: int = 10) -> bytes:
    """Listing page ``n`` with ``count`` product cards and an ItemList JSON-LD."""
    cards, elements = [], []
    for pos in range(1, count + 1):
        pid = ((n - 1) * count + pos - 1) % MAX_N + 1
        e = product_expected(pid)
        cards.append(
            f'<div class="card"><a href="/products/{pid}"><h2 class="name">{e["name"]}'
            f'</h2></a><p class="price">${e["price"]:,.2f}</p></div>\n'
        )
        elements.append(
            {
                "@type": "ListItem",
                "position": pos,
                "url": f"/products/{pid}",
                "item": {
                    "@type": "Product",
                    "name": e["name"],
                    "sku": e["sku"],
                    "offers": _product_ld(pid)["offers"],
                },
            }
        )
    ld = {"@context": "https://schema.org", "@type": "ItemList", "itemListElement": elements}
    main = f'<h1>Catalogue page {n}</h1>\n<div class="cards">\n{"".join(cards)}</div>\n'
    return _layout(f"Catalogue page {n}", main, ld_script(ld))


def app_shell_page(n: int, price: Price = LISTED) -> bytes:
    """JavaScript app shell that renders product ``n`` (and its JSON-LD) after 50 ms."""
    e = _priced(n, price)
    shown = "" if e["price"] is None else f"${e['price']:,.2f}"
    data = {"name": e["name"], "price": shown, "ld": _product_ld(n, price)}
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Shop</title>'
        "</head>\n<body><noscript>You need to enable JavaScript to run this app.</noscript>\n"
        '<div id="root"></div>\n<script>\n(function(){var p='
        + json.dumps(data).replace("</", "<\\/")
        + ";\nsetTimeout(function(){var r=document.getElementById('root'),"
        "d=document;\nvar h=d.createElement('h1');h.textContent=p.name;r.appendChild(h);\n"
        "var s=d.createElement('p');s.className='price';s.textContent=p.price;r.appendChild(s);"
        "\nvar l=d.createElement('script');l.type='application/ld+json';l.textContent=JSON."
        "stringify(p.ld);d.head.appendChild(l);d.title=p.name;},50);})();\n</script>\n"
        "</body></html>\n"
    ).encode()


def js_data_page(n: int, price: Price = LISTED) -> bytes:
    """A readable page whose structured data (product ``n``'s JSON-LD) only JavaScript adds."""
    script = (
        "<script>setTimeout(function(){var l=document.createElement('script');"
        "l.type='application/ld+json';l.textContent=JSON.stringify("
        + json.dumps(_product_ld(n, price)).replace("</", "<\\/")
        + ");document.head.appendChild(l);},50);</script>\n</body>"
    )
    return product_page(n, "plain", price).replace(b"</body>", script.encode(), 1)


_PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x01\x00\x08\x06\x00\x00"
_CAFE = (
    "<!DOCTYPE html>\n<html><head>{meta}<title>Café crème</title></head>\n<body><h1>Café crème"
    "</h1>\n<p>Un café crème, s'il vous plaît. Voilà, très bien.</p>\n</body></html>\n"
)
_LATIN1 = "text/html; charset=iso-8859-1"
_INDEX = (
    "<h1>Example Shop</h1>\n<ul>\n"
    + "".join(
        f'<li><a href="{p}">{p}</a></li>\n'
        for p in (
            "/products/1",
            "/plain/1",
            "/microdata/1",
            "/articles/1",
            "/list/1",
            "/app-shell/1",
            "/status/404",
            "/redirect/3",
            "/encoding/latin1",
        )
    )
    + "</ul>\n"
)
_STATIC: dict[str, tuple[int, bytes | str, str, dict[str, str]]] = {
    "/": (200, _layout("Home", _INDEX), HTML_TYPE, {}),
    "/binary": (200, _BINARY, "application/octet-stream", {}),
    "/binary-as-html": (200, _PNG_HEAD + _BINARY[len(_PNG_HEAD) :], HTML_TYPE, {}),
    "/encoding/latin1": (
        200,
        _CAFE.format(meta='<meta charset="iso-8859-1">').encode("latin-1"),
        _LATIN1,
        {},
    ),
    "/encoding/mislabelled": (200, _CAFE.format(meta="").encode(), _LATIN1, {}),
    "/redirect-loop": (302, "<p>Moved</p>", HTML_TYPE, {"Location": "/redirect-loop"}),
}
def product_pdf(n: int) -> bytes:
    """Product ``n`` as a PDF data sheet (its name the document title)."""
    expected = product_expected(n)
    lines = [f"SKU: {expected['sku']}", f"Brand: {expected['brand']}",
             f"Price: ${expected['price']:.2f}", "", _short_description(n)]
    return text_pdf([lines], {"Title": expected["name"], "Author": expected["brand"]})


def article_pdf(n: int) -> bytes:
    """Article ``n`` as a PDF: headline, author and date in its document information."""
    expected = article_expected(n)
    stamp = "D:" + expected["date_published"].replace("-", "") + "090000Z"
    return text_pdf(
        [[expected["headline"], f"By {expected['author']}"], [_short_description(n)]],
        {"Title": expected["headline"], "Author": expected["author"], "CreationDate": stamp},
    )


_PDF_PAGES: dict[str, tuple[Callable[[int], bytes], str]] = {
    "pdf": (product_pdf, "application/pdf"),
    "pdf-article": (article_pdf, "application/pdf"),
    "pdf-unlabelled": (product_pdf, "application/octet-stream"),  # only its bytes say PDF
    "pdf-encrypted": (lambda n: encrypted_pdf(product_pdf(n), "secret"), "application/pdf"),
    "pdf-broken": (lambda n: product_pdf(n)[:200], "application/pdf"),
}
# a product's own pages: they show the price the site gives it now (ExampleSite.reprice)
_PRODUCT_PAGES: dict[str, Callable[[int, Price], bytes]] = {
    "products": lambda n, price: product_page(n, "jsonld", price),
    "plain": lambda n, price: product_page(n, "plain", price),
    "microdata": lambda n, price: product_page(n, "microdata", price),
    "app-shell": app_shell_page,
    "js-data": js_data_page,
}



class _Server(ThreadingHTTPServer):
    """Threaded HTTP server that logs handler errors instead of printing them."""

    daemon_threads, request_queue_size = True, 128
    site: ExampleSite

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("error serving %s", client_address, exc_info=True)


class ShopHandler(BaseHTTPRequestHandler):
    """Request handler implementing the example-site routes (subclass and extend ``route``)."""

    server: _Server
    site: ExampleSite  # the site this request is served by
    protocol_version = "HTTP/1.1"
    server_version = "ExampleSite/1.0"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        """Count the hit, then route (a page taken down: its status); malformed numbers: 400."""
        parts = urlsplit(self.path)
        self.site = self.server.site
        self.count = self.site._record(parts.path)
        self.query = parse_qs(parts.query)
        gone = self.site.taken_down(parts.path)
        if gone is not None:
            self.send_page(gone, f"<h1>{gone} {HTTPStatus(gone).phrase}</h1>")
            return
        try:
            self.route(parts.path)
        except ValueError as exc:
            self.send_page(400, f"<h1>400 Bad Request</h1><p>{html.escape(str(exc))}</p>")

    do_HEAD = do_GET

    def route(self, path: str) -> None:
        """Dispatch ``path`` to its page."""
        m = re.fullmatch(r"/([a-z-]+)/([^/]+)", path)
        kind, arg = m.groups() if m else ("", "")
        num = int(arg) if re.fullmatch(r"[0-9]{1,9}", arg) else -1
        if path in _STATIC:
            self.send_page(*_STATIC[path])
        elif kind in _PRODUCT_PAGES and 1 <= num <= MAX_N:
            self.send_page(200, _PRODUCT_PAGES[kind](num, self.site.price_of(num)))
        elif kind == "articles" and 1 <= num <= MAX_N:
            self.send_page(200, article_page(num))
        elif kind == "etag" and 1 <= num <= MAX_N:
            self.validated(num)
        elif kind in _PDF_PAGES and 1 <= num <= MAX_N:
            make, content_type = _PDF_PAGES[kind]
            self.send_page(200, make(num), content_type)
        elif kind == "list" and 1 <= num <= MAX_N:
            self.send_page(200, list_page(num, int(self.qnum("count", 10, 0, 500))))
        elif kind == "status" and num >= 0:
            if not 200 <= num <= 599:
                raise ValueError(f"unsupported status {num}")
            self.send_page(num, b"" if num in (204, 304) else f"<h1>Status {num}</h1>")
        elif kind == "redirect" and num >= 0:
            target = f"/redirect/{num - 1}" if num > 0 else "/products/1"
            self.send_page(302, f"<p>Moved to {target}</p>", headers={"Location": target})
        elif kind == "flaky":
            self.flaky(arg)
        elif path == "/redirect-to":
            target = self.query.get("url", ["/products/1"])[0]
            self.send_page(302, "<p>Moved</p>", headers={"Location": target})
        elif path == "/slow":
            time.sleep(self.qnum("delay", 1.0, 0.0, 60.0))
            self.send_page(200, product_page(1, "small"))
        else:
            self.send_page(404, "<h1>404 Not Found</h1>")

    def send_page(
        self,
        status: int,
        body: bytes | str,
        ctype: str = HTML_TYPE,
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        """Send a response (``length`` overrides Content-Length); ``str`` bodies get wrapped."""
        if isinstance(body, str):
            body = f"<!DOCTYPE html>\n<html><body>\n{body}\n</body></html>\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def validated(self, n: int) -> None:
        """Product ``n`` with an ETag (a new one after each reprice) and Last-Modified; 304
        when the client has it."""
        tag = f'"product-{n}-v{self.site.version_of(n)}"'
        headers = {"ETag": tag, "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}
        if self.headers.get("If-None-Match") == tag:
            self.send_page(304, b"", headers=headers)
        else:
            self.send_page(200, product_page(n, price=self.site.price_of(n)), headers=headers)

    def qnum(self, name: str, default: float, lo: float, hi: float) -> float:
        """Numeric query parameter clamped to ``[lo, hi]``; ValueError if malformed."""
        values = self.query.get(name)
        return default if not values else min(max(float(values[0]), lo), hi)

    def flaky(self, key: str) -> None:
        """Fail the first ``fail`` requests for ``key``, then serve product 1."""
        fail = int(self.qnum("fail", 1, 0, 1e9))
        if self.count > fail:
            self.send_page(200, product_page(1))
            return
        code = int(self.qnum("code", 503, 400, 599))
        retry = self.query.get("retry_after")
        body = f"<h1>Status {code}</h1><p>Failure {self.count} of {fail} for {html.escape(key)}</p>"
        self.send_page(code, body, headers={"Retry-After": retry[0]} if retry else None)


class ExampleSite:
    """The example shop, served by a threaded HTTP server in a daemon thread.

    Its changes (:meth:`reprice`, :meth:`take_down`) are its own: another instance, or the
    module's page functions, still serve the listed shop.
    """

    handler: type[ShopHandler] = ShopHandler

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._hits: dict[str, int] = {}
        self._prices: dict[int, float | None] = {}  # products repriced: their price now
        self._versions: dict[int, int] = {}  # times each was repriced (its ETag's version)
        self._gone: dict[str, int] = {}  # pages taken down: the status they answer
        self._lock = threading.Lock()

    def start(self) -> ExampleSite:
        """Bind the socket and start serving in a daemon thread; returns ``self``."""
        if self._server is None:
            server = self._server = _Server((self.host, self.port), self.handler)
            server.site = self
            self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
            self._thread.start()
            logger.info("example site serving at %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        """Base URL such as ``http://127.0.0.1:43125`` (only while started)."""
        if self._server is None:
            raise RuntimeError("ExampleSite is not started")
        return "http://{}:{}".format(*self._server.server_address[:2])

    def url(self, path: str) -> str:
        """Absolute URL for ``path`` on this site."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def hits(self, path: str) -> int:
        """Number of requests received for ``path`` (query string ignored)."""
        with self._lock:
            return self._hits.get(urlsplit(path).path, 0)

    def reprice(self, n: int, price: float | None) -> None:
        """Product ``n``'s pages show ``price`` from now on, in their structured data and their
        visible text; None: they show no price at all (the site stopped serving the field).

        The product's own pages follow (``/products``, ``/plain``, ``/microdata``, ``/etag``
        with a new ETag, ``/app-shell``, ``/js-data``); listing pages and PDFs keep the listed
        price.
        """
        if not 1 <= n <= MAX_N:
            raise ValueError(f"no product {n}: 1 to {MAX_N}")
        if price is not None and (isinstance(price, bool) or not isinstance(price, int | float)
                                  or not 0 <= price < float("inf")):
            raise ValueError(f"price: a number, 0 or more, or None; got {price!r}")
        with self._lock:
            self._prices[n] = None if price is None else round(float(price), 2)
            self._versions[n] = self._versions.get(n, 0) + 1

    def take_down(self, page: int | str, status: int = 404) -> str:
        """Remove a page: product ``n``'s ``/products/<n>``, or a path; it answers ``status``
        (404 or 410) from now on. Returns the path."""
        if status not in GONE_STATUSES:
            raise ValueError(f"status: one of {list(GONE_STATUSES)}, got {status!r}")
        path = f"/products/{page}" if isinstance(page, int) else urlsplit(page).path
        if not path.startswith("/"):
            raise ValueError(f"page: a product number or a path starting with /, got {page!r}")
        with self._lock:
            self._gone[path] = status
        return path

    def product(self, n: int) -> Product:
        """The record product ``n``'s pages describe now (:func:`product_expected`, repriced)."""
        return _priced(n, self.price_of(n))

    def price_of(self, n: int) -> Price:
        """Product ``n``'s price now: :data:`LISTED` unless it was repriced."""
        with self._lock:
            return self._prices.get(n, LISTED)

    def version_of(self, n: int) -> int:
        """1 for a product as listed, one more for each reprice."""
        with self._lock:
            return 1 + self._versions.get(n, 0)

    def taken_down(self, path: str) -> int | None:
        """The status a page taken down answers, or None while it is up."""
        with self._lock:
            return self._gone.get(path)

    def _record(self, path: str) -> int:
        """Count one request for ``path`` and return the new total."""
        with self._lock:
            self._hits[path] = self._hits.get(path, 0) + 1
            return self._hits[path]

    def __enter__(self) -> ExampleSite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve the example site until interrupted; prints the base URL."""
    parser = argparse.ArgumentParser(description="Serve the batchscraper example shop.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = parser.parse_args(argv)
    with ExampleSite(args.host, args.port) as site, contextlib.suppress(KeyboardInterrupt):
        print(site.base_url, flush=True)
        while True:
            time.sleep(3600)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
