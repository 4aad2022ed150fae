"""The example shop plus the hostile pages a batch scraper must survive, for the tests only.

``HostileSite`` serves everything :class:`~batchscraper.demo.site.ExampleSite` serves, and
``/huge`` (a valid page of any size) and ``/hostile/...``: decompression bombs, drips, lies
about lengths and encodings, deep trees, an XML bomb, records too big for MongoDB, keys MongoDB
treats specially, slow product pages.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import time
import zlib

from batchscraper.demo.site import HTML_TYPE, ExampleSite, ShopHandler, ld_script, product_page

_HUGE_HEAD = b"<!DOCTYPE html>\n<html><head><title>Huge</title></head>\n<body>\n<h1>Huge</h1>\n"
_HUGE_LINE = b"<p>" + b"Lorem ipsum dolor sit amet, huge page filler text. " * 2 + b"</p>\n"
MB = 1024 * 1024
_OG_PAGE = (
    '<!DOCTYPE html>\n<html><head>{meta}<meta property="og:title" content="{title}">\n'
    "<title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>{text}</p>\n</body></html>\n"
)
# name -> (body, Content-Type, the title a correct decoding gives)
ENCODING_PAGES: dict[str, tuple[bytes, str, str]] = {
    "shift-jis": (
        _OG_PAGE.format(meta="", title="日本語の商品", text="価格は千円です。").encode("shift_jis"),
        "text/html; charset=shift_jis",
        "日本語の商品",
    ),
    "cp1251-meta": (  # no charset in the header: the <meta> tells
        _OG_PAGE.format(
            meta='<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">',
            title="Товар номер один", text="Цена: сто рублей.",
        ).encode("cp1251"),
        "text/html",
        "Товар номер один",
    ),
    "invalid-utf8": (  # declared UTF-8, one stray byte in the text
        _OG_PAGE.format(meta="", title="Café crème", text="broken \x00 here")
        .encode()
        .replace(b"\x00", b"\xff\xfe"),
        HTML_TYPE,
        "Café crème",
    ),
    "latin1-as-utf8": (  # declared UTF-8, sent as Latin-1: undecodable bytes become U+FFFD
        _OG_PAGE.format(meta="", title="Café crème", text="Voilà.").encode("latin-1"),
        HTML_TYPE,
        "Caf\ufffd cr\ufffdme",
    ),
    "bogus-charset": (
        _OG_PAGE.format(meta="", title="Café crème", text="Voilà.").encode(),
        "text/html; charset=x-no-such-charset",
        "Café crème",
    ),
    "utf-16-bom": (  # no charset anywhere: the byte order mark tells (and NULs are text)
        _OG_PAGE.format(meta="", title="Ελληνικό προϊόν", text="Τιμή: δέκα.").encode("utf-16"),
        "text/html",
        "Ελληνικό προϊόν",
    ),
    "utf-16be-declared": (  # no byte order mark: the header's charset tells
        _OG_PAGE.format(meta="", title="Café crème", text="Voilà.").encode("utf-16-be"),
        "text/html; charset=utf-16be",
        "Café crème",
    ),
}
_XML_BOMB = (
    b'<?xml version="1.0"?>\n<!DOCTYPE html [\n<!ENTITY a "aaaaaaaaaa">\n'
    + b"".join(
        b'<!ENTITY %s "%s">\n' % (bytes([98 + i]), (b"&%s;" % bytes([97 + i])) * 10)
        for i in range(9)
    )
    + b']>\n<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Bomb</title></head>'
    b"<body><p>&j;</p></body></html>\n"
)
_DOLLAR_LD = {
    "@context": "https://schema.org",
    "@type": "Product",
    "name": "Dollar product",
    "sku": "SKU-$1",
    "$where": "function() { return true }",
    "price.usd": "12.50",
    "additionalProperty": {"$gt": 1, "a.b": {"$ref": "x", "": "empty key"}},
}


@functools.lru_cache(maxsize=8)
def compressed_bomb(megabytes: float, encoding: str) -> bytes:
    """``megabytes`` of HTML-ish filler compressed with ``gzip``, ``gzip, gzip`` or ``deflate``."""
    raw = b"<html><body><p>" + b" " * int(megabytes * MB) + b"</p></body></html>"
    if encoding == "deflate":
        return zlib.compress(raw, 9)
    body = gzip.compress(raw, 9)
    return gzip.compress(body, 9) if encoding == "gzip, gzip" else body


def nested_page(depth: int) -> bytes:
    """A page whose body is ``depth`` nested ``<div>``s (parsers' recursion limits)."""
    head = _OG_PAGE.split("<body>", 1)[0].format(meta="", title="Deep page", text="")
    return (head + "<body>" + "<div>" * depth + "deep" + "</div>" * depth + "</body></html>\n"
            ).encode()


def big_record_page(megabytes: float) -> bytes:
    """A valid product page with ``megabytes`` of text in one ``<pre>``."""
    ld = ld_script({"@context": "https://schema.org", "@type": "Product",
                     "name": "Big product", "sku": "SKU-BIG"})
    filler = ("Big page filler text, line after line. " * 2 + "\n") * int(megabytes * MB / 81)
    return (f"<!DOCTYPE html>\n<html><head><title>Big product</title>\n{ld}</head>\n<body>"
            f"<h1>Big product</h1>\n<pre>{filler}</pre>\n</body></html>\n").encode()


def dollar_keys_page() -> bytes:
    """Structured data whose keys MongoDB treats specially (``$`` prefixes, dots)."""
    return _OG_PAGE.format(meta=ld_script(_DOLLAR_LD), title="Dollar product",
                           text="Keys with dollars and dots.").encode()


class HostileHandler(ShopHandler):
    """The example shop's routes plus ``/huge`` and ``/hostile/<name>``."""

    def route(self, path: str) -> None:
        """Dispatch the hostile routes here, the rest to the shop."""
        if path == "/huge":
            self.huge(int(self.qnum("mb", 20.0, 0.0, 1024.0) * MB))
        elif path.startswith("/hostile/"):
            self.hostile(path.removeprefix("/hostile/"))
        else:
            super().route(path)

    def huge(self, total: int) -> None:
        """Stream a valid HTML page of exactly ``total`` bytes in 64 KiB chunks."""
        tail = b"</body>\n</html>\n"
        total = max(total, len(_HUGE_HEAD) + len(tail))
        self.send_page(200, _HUGE_HEAD, length=total)
        remaining, block = total - len(_HUGE_HEAD) - len(tail), _HUGE_LINE * 512
        lines, spaces = divmod(remaining % len(block), len(_HUGE_LINE))
        chunks = [block] * (remaining // len(block)) + [_HUGE_LINE * lines + b" " * spaces + tail]
        for chunk in chunks if self.command != "HEAD" else ():
            self.wfile.write(chunk)

    def hostile(self, name: str) -> None:
        """``/hostile/<name>``: bombs, drips, lies about lengths and encodings, deep trees."""
        if name.startswith("encoding/") and name[9:] in ENCODING_PAGES:
            body, ctype, _ = ENCODING_PAGES[name[9:]]
            self.send_page(200, body, ctype)
        elif name in ("gzip-bomb", "gzip2-bomb", "deflate-bomb"):
            encoding = {"gzip-bomb": "gzip", "gzip2-bomb": "gzip, gzip"}.get(name, "deflate")
            body = compressed_bomb(self.qnum("mb", 64, 0, 1024), encoding)
            self.send_page(200, body, headers={"Content-Encoding": encoding})
        elif name == "corrupt-gzip":
            self.send_page(200, b"this is not gzip at all", headers={"Content-Encoding": "gzip"})
        elif name == "drip":
            self.drip(int(self.qnum("bytes", 1000, 1, MB)), self.qnum("interval", 0.5, 0.01, 10))
        elif name == "json-line":
            self.json_line(int(self.qnum("mb", 50, 0, 1024) * MB), self.qnum("chunked", 0, 0, 1))
        elif name == "length-mismatch":
            self.send_page(200, product_page(1, "small")[:100], length=100_000)
            self.close_connection = True
        elif name == "header-bomb":
            filler = "x" * int(self.qnum("kb", 256, 1, 10_240) * 1024)
            self.send_page(200, product_page(1, "small"), headers={"X-Filler": filler})
        elif name == "nested":
            self.send_page(200, nested_page(int(self.qnum("depth", 100_000, 1, 1_000_000))))
        elif name == "xml-bomb":
            self.send_page(200, _XML_BOMB, "application/xhtml+xml")
        elif name == "empty":
            self.send_page(200, b"")
        elif name == "dollar-keys":
            self.send_page(200, dollar_keys_page())
        elif name == "big-record":
            self.send_page(200, big_record_page(self.qnum("mb", 9, 0, 20)))
        elif name.startswith("slow-products/") and name[14:].isdigit():
            time.sleep(self.qnum("delay", 1.0, 0.0, 30.0))
            self.send_page(200, product_page(int(name[14:]), "small"))
        else:
            self.send_page(404, "<h1>404 Not Found</h1>")

    def drip(self, total: int, interval: float) -> None:
        """Announce ``total`` bytes, then send one every ``interval`` seconds."""
        self.send_page(200, b"", length=total)
        with contextlib.suppress(OSError):  # the client gave up
            for _ in range(total):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(interval)

    def json_line(self, total: int, chunked: float) -> None:
        """A JSON array of about ``total`` bytes on one line; ``chunked``: length not announced."""
        record = b'{"name":"x","price":1.5},'
        block = record * (64 * 1024 // len(record))
        parts = [b"[", *[block] * (total // len(block)), b'{"name":"last"}]']
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(sum(map(len, parts))))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up
            for part in parts:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")


class HostileSite(ExampleSite):
    """The example shop with the hostile pages too (the tests' ``site`` fixture)."""

    handler = HostileHandler
