"""Hosts for the egress-guard tests: an attacker's "public" site and a canary.

Only ``127.0.0.2/32`` is allowed in these tests, the way an intranet deployment
allows its own network: the attacker's site lives there, the canary (an
internal service holding a secret) on ``127.0.0.1`` — the same port number, so
a name that rebinds from one address to the other reaches it. The canary counts
every connection it accepts: a guard that holds lets none through.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from batchscraper.downloadermiddlewares.ssrf import IPAddress, resolve

SECRET = "canary-secret-7f3a91"
PUBLIC_ADDRESS = "127.0.0.2"
INTERNAL_ADDRESS = "127.0.0.1"
REBINDING_NAME = "rebind.test"
PUBLIC_NAME = "A public product"
SCRIPTED_NAME = "A product only a browser sees"
# its data is written by a script: only a rendered page has it
SCRIPTED_PAGE = (
    "<html><head></head><body><script>const l = document.createElement('script');"
    "l.type = 'application/ld+json'; l.textContent = JSON.stringify("
    + json.dumps({"@context": "https://schema.org", "@type": "Product", "name": SCRIPTED_NAME})
    + "); document.head.appendChild(l);</script></body></html>"
)
PUBLIC_LD = (
    '<script type="application/ld+json">'
    + json.dumps({"@context": "https://schema.org", "@type": "Product", "name": PUBLIC_NAME})
    + "</script>"
)


class CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type) -> None:
        super().__init__(address, handler)
        self.accepted = 0
        self.paths: list[str] = []

    def get_request(self) -> Any:
        self.accepted += 1
        return super().get_request()


class CanaryHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        body = json.dumps({"name": SECRET, "secret": SECRET}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def attack_pages(canary: str) -> dict[str, str]:
    """Path -> HTML of pages that each try one way out to ``canary`` (``http://host:port``)."""
    ws = canary.replace("http://", "ws://")
    to = f"/r?to={canary}"
    script = "<script>{}</script>"
    return {
        "/p/js-redirect": script.format(f"location.replace('{to}/latest/meta-data/')"),
        "/p/meta-refresh": f'<meta http-equiv="refresh" content="0;url={to}/meta">',
        "/p/popup": script.format(f"window.open('{canary}/popup')"),
        "/p/websocket": script.format(f"new WebSocket('{ws}/ws')"),
        "/p/iframe": f'<iframe src="{canary}/iframe"></iframe>',
        "/p/redirected-fetch": script.format(
            f"fetch('{to}/fetch').then(r => r.text()).then(t => document.body.append(t))"
        ),
        "/p/xhr": script.format(
            f"const x = new XMLHttpRequest(); x.open('GET', '{canary}/xhr'); x.send()"
        ),
        "/p/worker": script.format(
            "new Worker(URL.createObjectURL(new Blob("
            f"[\"fetch('{canary}/worker')\"], {{type: 'text/javascript'}})))"
        ),
        "/p/shared-worker": script.format("new SharedWorker('/shared-worker.js')"),
        # starts trying once its own download is over, hoping to get the tab's next page
        # blamed for the refusals (and to use the idle tab)
        "/p/interval": script.format(
            f"setTimeout(() => setInterval(() => fetch('{canary}/interval'), 5), 300)"
        ),
        "/p/rebinding": script.format(
            "for (let i = 0; i < 6; i++) "
            "fetch('/data?' + i).then(r => r.text()).then(t => document.body.append(t))"
        ),
    }


def public_handler(canary: str) -> type[BaseHTTPRequestHandler]:
    pages = attack_pages(canary)

    class PublicHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.server.paths.append(self.path)  # type: ignore[attr-defined]
            parts = urlsplit(self.path)
            if parts.path == "/r":  # an open redirect
                self.send_response(302)
                self.send_header("Location", parse_qs(parts.query)["to"][0])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if parts.path == "/p/redirect":
                self.send_response(302)
                self.send_header("Location", f"{canary}/top-level")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if parts.path == "/shared-worker.js":
                self._send("text/javascript", f"fetch('{canary}/shared-worker')")
                return
            if parts.path == "/p/slow-harmless":  # the previous page has time to act
                time.sleep(2)
            if parts.path == "/data":
                self._send("text/plain", "public data ")
                return
            if parts.path == "/p/scripted":
                self._send("text/html", SCRIPTED_PAGE)
                return
            html = pages.get(parts.path, "")
            self._send("text/html", f"<html><head>{PUBLIC_LD}</head><body>{html}</body></html>")

        def _send(self, content_type: str, text: str) -> None:
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return PublicHandler


@contextmanager
def attack_hosts() -> Iterator[tuple[CountingServer, CountingServer]]:
    """(public site on 127.0.0.2, canary on 127.0.0.1 with the same port)."""
    for _ in range(20):
        public = CountingServer((PUBLIC_ADDRESS, 0), BaseHTTPRequestHandler)
        port = public.server_address[1]
        try:
            canary = CountingServer((INTERNAL_ADDRESS, port), CanaryHandler)
            break
        except OSError:
            public.server_close()
    public.RequestHandlerClass = public_handler(f"http://{INTERNAL_ADDRESS}:{port}")
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (public, canary)]
    for thread in threads:
        thread.start()
    try:
        yield public, canary
    finally:
        for server in (public, canary):
            server.shutdown()
            server.server_close()


_answers = itertools.cycle([PUBLIC_ADDRESS, INTERNAL_ADDRESS])


def rebinding_resolver(host: str, port: int) -> list[IPAddress]:
    """``BATCH_EGRESS_RESOLVER`` for the tests: a DNS server that rebinds.

    ``rebind.test`` answers the public address and the internal one in turn,
    as an attacker's name server with a zero TTL does.
    """
    import ipaddress

    if host == REBINDING_NAME:
        return [ipaddress.ip_address(next(_answers))]
    return resolve(host, port)
