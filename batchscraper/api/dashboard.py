"""The web dashboard's server side: its static files at ``/ui/`` and item screenshots.

``scrapyd.conf``::

    [services]
    ui = batchscraper.api.dashboard.Dashboard

The dashboard is plain HTML, ES modules and CSS shipped in ``batchscraper/ui``
(package data, so an installed package has them); the browser does the rest
through the batch API, with the API key the user types in. The files hold no
secret, so they are served without a key; every answer carries a strict
Content-Security-Policy, so even a value that slipped into markup could not
run script.

``GET /batches/{id}/items/{index}/screenshot`` (mounted by
:class:`batchscraper.api.resources.Items`) answers the PNG an item's browser
render took, checked against the caller's key like every other endpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, cast

from gridfs.errors import NoFile
from scrapyd.exceptions import ConfigError
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource

from batchscraper.api.app import BatchApi
from batchscraper.api.http import ApiResource
from batchscraper.exceptions import BatchNotFoundError
from batchscraper.store.base import document_id

if TYPE_CHECKING:
    from scrapyd.website import Root
    from twisted.web.server import Request

    from batchscraper.api.auth import Caller

UI_PACKAGE, UI_FOLDER = "batchscraper", "ui"
# what the dashboard is made of (screenshot.png is the README's, not served)
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# blob: images are screenshots the page fetched with the API key header
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
ITEM_INDEX = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str


def load_ui_files() -> dict[str, StaticFile]:
    """The dashboard's files by name, read once from the installed package."""
    folder = files(UI_PACKAGE) / UI_FOLDER
    found = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in CONTENT_TYPES:
            found[entry.name] = StaticFile(entry.read_bytes(), CONTENT_TYPES[suffix])
    if "index.html" not in found:
        raise ConfigError(f"batchscraper: the dashboard's files are missing from {folder}")
    return found


class Dashboard(Resource):
    """``/ui/``: the dashboard's page and its modules (no key needed: they hold no data)."""

    isLeaf = True

    def __init__(self, root: Root) -> None:
        super().__init__()
        self.api = BatchApi.of(root)
        self.api.register(self)
        self.files = load_ui_files()

    def render_GET(self, request: Request) -> bytes:
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name.encode(), value.encode())
        path = b"/".join(cast("list[bytes]", request.postpath)).decode("utf-8", "replace")
        if not request.postpath:  # "/ui": relative module URLs need the trailing slash
            request.setResponseCode(301)
            request.setHeader(b"location", (self.api.base(request) + "/ui/").encode())
            return b""
        static = self.files.get(path or "index.html")
        if static is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found\n"
        request.setHeader(b"content-type", static.content_type.encode())
        # revalidated on every load, so a new version of the package is picked up at once
        request.setHeader(b"cache-control", b"no-cache")
        return static.body


class ItemScreenshot(ApiResource):
    """``/batches/{id}/items/{index}/screenshot``: the PNG of the item's browser render."""

    isLeaf = True

    def __init__(self, api: BatchApi, batch_id: str, index: str) -> None:
        super().__init__(api)
        self.batch_id = batch_id
        self.index = index

    async def handle_GET(self, request: Request) -> None:
        caller = self.caller(request)
        if request.postpath != [b"screenshot"] or not ITEM_INDEX.fullmatch(self.index):
            raise BatchNotFoundError("no such endpoint")
        png = await deferToThread(self._read, caller)
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"image/png")
        request.setHeader(b"content-length", str(len(png)).encode())
        request.setHeader(b"cache-control", b"private, max-age=3600")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"content-security-policy", b"default-src 'none'")
        if request.method != b"HEAD":
            request.write(png)
        request.finish()

    def _read(self, caller: Caller) -> bytes:
        service = self.api.service
        batch = service.get(caller, self.batch_id)
        doc = service.store.item(document_id(batch), int(self.index), ("screenshot",))
        shot = (doc or {}).get("screenshot")
        if not shot:
            raise BatchNotFoundError(f"item {self.index} of {batch['_id']} has no screenshot")
        try:
            return service.store.load_screenshot(shot["gridfs_id"])
        except NoFile as exc:
            raise BatchNotFoundError(f"the screenshot of item {self.index} is gone") from exc
