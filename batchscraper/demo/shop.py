"""A shop without structured data, many pages of one template: what learned templates are for.

``/item/<n>`` is a product page (no JSON-LD, microdata or OpenGraph) with
realistic variation: description lengths, an optional material, a promo
block on some pages, sections in either order, and, with ``ab=True``, a
second layout on every seventh page. ``/list/<n>`` is a listing page of the
same host. From page ``switch_at`` on, product pages use a changed template
(the rating block has a new class name): the old template's selectors miss.
:func:`item_truth` is each product page's ground truth.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from batchscraper.jsontypes import JSONObject

#: what a batch asks of the shop's item pages (its tests and bench/templates.py)
PRODUCT_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "price": {"type": "number"},
        "colour": {"type": "string"},
        "material": {"type": "string"},
        "rating": {"type": "number"},
    },
    "required": ["name", "price", "rating"],
}
COLOURS = ("Red", "Oak brown", "Slate grey", "Forest green", "Ivory", "Navy blue")
MATERIALS = ("Oak", "Walnut veneer", "Recycled steel", "Linen", "Bamboo")
WORDS = ("sturdy", "hand finished", "made to last", "easy to assemble", "water resistant",
         "designed in Lisbon", "a quiet classic", "fits small rooms")


def item_truth(n: int) -> JSONObject:
    """What product page ``n`` says: name, price, colour, material (or None), rating."""
    return {
        "name": f"Oakline Chair {n}",
        "price": round(20 + (n * 7.31) % 480, 2),
        "colour": COLOURS[n % len(COLOURS)],
        "material": None if n % 5 == 0 else MATERIALS[n % len(MATERIALS)],
        "rating": round(1 + (n * 0.37) % 4, 1),
    }


def item_page(n: int, changed: bool = False, ab: bool = False) -> str:
    """Product page ``n``; ``changed``: the site's new template; ``ab``: A/B layouts."""
    truth = item_truth(n)
    rows = f"<tr><th>Colour</th><td>{truth['colour']}</td></tr>"
    if truth["material"]:
        rows += f"<tr><th>Material</th><td>{truth['material']}</td></tr>"
    specs = f'<table class="specs">{rows}</table>'
    text = ", ".join(WORDS[(n + i) % len(WORDS)] for i in range(1 + n % 6))
    description = f'<div class="description"><p>The Oakline chair {n}: {text}.</p></div>'
    sections = specs + description if n % 4 else description + specs
    # the new template renames the rating's class: selectors anchored on it miss
    rating = f'<div class="{"score" if changed else "rating"}">Rating: {truth["rating"]}</div>'
    promo = '<div class="promo"><p>Free delivery this week only!</p></div>' if n % 3 == 0 else ""
    body = (f'<ol class="crumbs"><li><a href="/">Home</a></li><li><a href="/list/1">Chairs'
            f'</a></li></ol>{promo}<div class="gallery"><img class="main-img" src="/i/{n}.jpg"'
            f' alt=""><ul class="thumbs"><li><img src="/i/{n}-2.jpg" alt=""></li></ul></div>'
            f'<h1 class="product-title">{truth["name"]}</h1>'
            f'<div class="price-box"><span class="price">${truth["price"]:.2f}</span></div>'
            f'<div class="buy"><button class="add">Add to cart</button>'
            f'<span class="ship">Ships in {n % 5 + 1} days</span></div>'
            f"{rating}{sections}")
    if ab and n % 7 == 0:
        body = f'<section class="product-b"><div class="col">{body}</div></section>'
    return (f"<html><head><title>{truth['name']} | Oakline</title></head><body>"
            '<header class="top"><a href="/">Oakline</a></header>'
            '<nav class="menu"><a href="/list/1">Chairs</a> <a href="/list/2">Tables</a></nav>'
            f'<main class="product">{body}</main>'
            "<footer><p>Oakline furniture, Lisbon</p></footer></body></html>")


def list_page(n: int, count: int = 12) -> str:
    """A listing page of product cards."""
    cards = "".join(
        f'<li class="card"><h2><a href="/item/{i}">{item_truth(i)["name"]}</a></h2>'
        f'<span class="card-price">${item_truth(i)["price"]:.2f}</span></li>'
        for i in range(n * count, n * count + count))
    return ("<html><head><title>Chairs | Oakline</title></head><body>"
            '<nav class="menu"><a href="/list/1">Chairs</a></nav>'
            f'<main class="listing"><h1>Chairs, page {n}</h1>'
            f'<div class="filters"><span>Sort by</span></div><ul class="grid">{cards}</ul>'
            f'<div class="pager"><a href="/list/{n + 1}">Next</a></div></main></body></html>')


class TemplateShop:
    """The shop served on 127.0.0.1 by a threaded HTTP server in a daemon thread."""

    def __init__(self, switch_at: int | None = None, ab: bool = False) -> None:
        self.switch_at = switch_at
        self.ab = ab
        self._server: ThreadingHTTPServer | None = None

    def page(self, path: str) -> str | None:
        kind, _, number = path.strip("/").partition("/")
        if not number.isdigit():
            return None
        n = int(number)
        if kind == "item":
            changed = self.switch_at is not None and n >= self.switch_at
            return item_page(n, changed=changed, ab=self.ab)
        return list_page(n) if kind == "list" else None

    def start(self) -> TemplateShop:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.shop = self  # type: ignore[attr-defined]
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def url(self, path: str) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def __enter__(self) -> TemplateShop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        page = self.server.shop.page(self.path)  # type: ignore[attr-defined]
        body = (page or "not found").encode()
        self.send_response(200 if page else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8" if page else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
