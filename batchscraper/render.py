"""Headless rendering: when a page needs a browser, and how the browser is driven.

The HTTP fetch is the default. A request goes to Chromium (through
scrapy-playwright) when its URL or batch says ``render_js: always``, or in
``auto`` mode when the fetched HTML is an app shell (:func:`app_shell_reason`)
or extraction leaves required fields empty (the spider escalates).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urldefrag, urlsplit

import lxml.html
from lxml.etree import ParserError
from playwright.async_api import Page
from scrapy import Request
from scrapy.exceptions import DownloadTimeoutError
from scrapy.http import Response
from scrapy.utils.misc import load_object
from scrapy_playwright.handler import DEFAULT_CONTEXT_NAME, ScrapyPlaywrightDownloadHandler
from scrapy_playwright.page import PageMethod

from batchscraper.egress import EgressGuard, PageWatch
from batchscraper.exceptions import FetchError
from batchscraper.ssrf import ALLOW_ALL, AddressPolicy, FetchBlockedError

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# without these Chromium tries to reach Google's services at start-up
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # a reused tab would keep every page it left in the back/forward cache
    "--disable-features=BackForwardCache",
)
APP_SHELL_MARKERS = (
    re.compile(r"<div[^>]+id=[\"'](root|app|__next|__nuxt|svelte)[\"'][^>]*>\s*</div>", re.I),
    re.compile(r"<noscript>[^<]*(enable|requires?)\s+javascript", re.I),
    re.compile(
        r"ng-version=|data-reactroot|__NEXT_DATA__|window\.__NUXT__|data-server-rendered", re.I
    ),
)
# action type -> the keys it needs
ACTION_KINDS: dict[str, tuple[str, ...]] = {
    "click": ("selector",),
    "scroll": (),
    "wait": ("ms",),
    "wait_for": ("selector",),
    "fill": ("selector", "value"),
    "press": ("selector", "key"),
}
MAX_ACTIONS = 20
MAX_WAIT_MS = 30_000
BROWSER_KEYS = ("actions", "screenshot", "cookies", "user_agent", "viewport")
SCROLL_SCRIPT = "window.scrollBy(0, document.body.scrollHeight)"
# resolves once the DOM has not changed for `quiet` ms (at most `cap` ms): content that
# scripts add just after the load event is in the snapshot, without a fixed long sleep
SETTLE_SCRIPT = """([quiet, cap]) => new Promise(resolve => {
  let timer;
  const done = () => { observer.disconnect(); resolve(true); };
  const observer = new MutationObserver(() => {
    clearTimeout(timer);
    timer = setTimeout(done, quiet);
  });
  observer.observe(document, {subtree: true, childList: true, characterData: true});
  timer = setTimeout(done, quiet);
  setTimeout(done, cap);
})"""


@dataclass(frozen=True)
class RenderConfig:
    """Browser settings (``BATCH_BROWSER_*``, ``BATCH_CHROMIUM_PATH``)."""

    chromium_path: str
    max_pages: int
    blocked_resource_types: frozenset[str]
    app_shell_max_text: int
    max_body_bytes: int
    settle_ms: int
    settle_max_ms: int

    @classmethod
    def from_settings(cls, settings: Any) -> RenderConfig:
        return cls(
            chromium_path=chromium_executable(settings.get("BATCH_CHROMIUM_PATH")),
            max_pages=settings.getint("BATCH_BROWSER_MAX_PAGES"),
            blocked_resource_types=frozenset(settings.getlist("BATCH_BROWSER_BLOCKED_RESOURCES")),
            app_shell_max_text=settings.getint("BATCH_APP_SHELL_MAX_TEXT"),
            max_body_bytes=settings.getint("DOWNLOAD_MAXSIZE"),
            settle_ms=settings.getint("BATCH_BROWSER_SETTLE_MS"),
            settle_max_ms=settings.getint("BATCH_BROWSER_SETTLE_MAX_MS"),
        )

    def scrapy_settings(self) -> dict[str, Any]:
        """The scrapy-playwright settings for a crawl that may render pages."""
        handler = "batchscraper.render.BoundedPlaywrightHandler"
        return {
            "DOWNLOAD_HANDLERS": {"http": handler, "https": handler},
            "PLAYWRIGHT_BROWSER_TYPE": "chromium",
            "PLAYWRIGHT_LAUNCH_OPTIONS": {
                "executable_path": self.chromium_path,
                "headless": True,
                "args": list(CHROMIUM_ARGS),
            },
            # the shared context, plus one per set of per-URL options (user_agent,
            # viewport) in use, each closed when its last page is done
            "PLAYWRIGHT_MAX_CONTEXTS": self.max_pages + 1,
            "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": self.max_pages,
            "PLAYWRIGHT_ABORT_REQUEST": "batchscraper.render.abort_request",
        }


def check_browser_options(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The per-URL browser options of an input entry, checked; ValueError names the problem."""
    options = {key: entry[key] for key in BROWSER_KEYS if entry.get(key) is not None}
    actions = options.get("actions", [])
    if not isinstance(actions, list) or len(actions) > MAX_ACTIONS:
        raise ValueError(f"actions must be a list of at most {MAX_ACTIONS} objects")
    for number, action in enumerate(actions):
        kind = action.get("type") if isinstance(action, dict) else None
        if kind not in ACTION_KINDS:
            raise ValueError(f"actions[{number}].type must be one of {sorted(ACTION_KINDS)}")
        missing = [key for key in ACTION_KINDS[kind] if not isinstance(action.get(key), str | int)]
        if missing:
            raise ValueError(f"actions[{number}] ({kind}) needs {missing}")
        if kind == "wait" and not 0 <= float(action["ms"]) <= MAX_WAIT_MS:
            raise ValueError(f"actions[{number}].ms must be between 0 and {MAX_WAIT_MS}")
    if not isinstance(options.get("screenshot", False), bool):
        raise ValueError("screenshot must be true or false")
    cookies = options.get("cookies", {})
    if not isinstance(cookies, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in cookies.items()
    ):
        raise ValueError("cookies must be an object of strings")
    if not isinstance(options.get("user_agent", ""), str):
        raise ValueError("user_agent must be a string")
    viewport = options.get("viewport")
    if viewport is not None and not (
        isinstance(viewport, dict)
        and set(viewport) == {"width", "height"}
        and all(isinstance(v, int) and 100 <= v <= 10_000 for v in viewport.values())
    ):
        raise ValueError("viewport must be {width, height} in pixels (100-10000)")
    return options or None


def chromium_executable(configured: str | None) -> str:
    """``BATCH_CHROMIUM_PATH``, else the first Chromium on PATH, else Debian's path."""
    if configured:
        return configured
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium"


def app_shell_reason(html: str, max_text: int) -> str | None:
    """Why this HTML looks like a JavaScript app shell (content rendered client-side), or None."""
    try:
        tree = lxml.html.document_fromstring(html)
    except (ParserError, ValueError):
        return None
    for element in tree.xpath("//script | //style | //noscript | //template"):
        element.drop_tree()
    visible = len(" ".join(tree.text_content().split()))
    if visible > max_text:
        return None
    for marker in APP_SHELL_MARKERS:
        if marker.search(html):
            return f"app shell: {visible} characters of text and {marker.pattern[:24]!r}"
    return f"app shell: only {visible} characters of text" if visible < max_text // 4 else None


def browser_meta(
    request_options: dict[str, Any], timeout: float, config: RenderConfig
) -> dict[str, Any]:
    """Request meta that sends a request through Chromium with the URL's browser options."""
    methods = []
    if config.settle_ms:
        methods.append(
            PageMethod("evaluate", SETTLE_SCRIPT, [config.settle_ms, config.settle_max_ms])
        )
    wait_for = request_options.get("wait_for")
    if wait_for == "networkidle":
        methods.append(PageMethod("wait_for_load_state", "networkidle", timeout=timeout * 1000))
    elif wait_for:
        methods.append(PageMethod("wait_for_selector", wait_for, timeout=timeout * 1000))
    for action in request_options.get("actions") or ():
        methods.append(page_method_for(action, timeout))
    if request_options.get("screenshot"):
        methods.append(PageMethod("screenshot", type="png", full_page=True))
    context_kwargs = {
        key: request_options[key] for key in ("user_agent", "viewport") if request_options.get(key)
    }
    meta: dict[str, Any] = {
        "playwright": True,
        "playwright_page_goto_kwargs": {"wait_until": "load", "timeout": timeout * 1000},
        "playwright_page_methods": methods,
    }
    if context_kwargs:
        # contexts are keyed by their options, so pages with equal options share one
        meta["playwright_context"] = "ctx-" + str(sorted(context_kwargs.items()))
        meta["playwright_context_kwargs"] = context_kwargs
    return meta


def page_method_for(action: dict[str, Any], timeout: float) -> PageMethod:
    """One documented action (click, scroll, wait, wait_for, fill, press) as a page method."""
    kind = action["type"]
    if kind == "click":
        return PageMethod("click", action["selector"], timeout=timeout * 1000)
    if kind == "scroll":
        return PageMethod("evaluate", SCROLL_SCRIPT)
    if kind == "wait":
        return PageMethod("wait_for_timeout", float(action["ms"]))
    if kind == "wait_for":
        return PageMethod("wait_for_selector", action["selector"], timeout=timeout * 1000)
    if kind == "fill":
        return PageMethod("fill", action["selector"], action["value"])
    return PageMethod("press", action["selector"], action["key"])


def screenshot_from(meta: dict[str, Any]) -> bytes | None:
    """The PNG taken by a ``screenshot`` page method, if any."""
    for method in meta.get("playwright_page_methods") or ():
        if method.method == "screenshot" and isinstance(method.result, bytes):
            return method.result
    return None


# A browser download (navigation, page methods, settle, page close) gets this long in all
# before it is abandoned: twice the page timeout, plus a margin for the browser itself.
DEADLINE_FACTOR = 2
DEADLINE_MARGIN_SECONDS = 5.0
# A reused tab's renderer collects its garbage lazily (170 MB after 125 pages, 33 MB after
# a collection that takes ~5 ms): collect every this many pages. A tab is retired (closed,
# replaced by a new one) after TAB_MAX_PAGES, which also frees the driver's objects for it.
TAB_GC_EVERY = 20
TAB_MAX_PAGES = 200


class BoundedPlaywrightHandler(ScrapyPlaywrightDownloadHandler):
    """scrapy-playwright's handler with tabs reused, a deadline per download and browser restarts.

    - Tabs are reused: a new tab costs Chromium a renderer process (about 115 ms of CPU
      here, twice the navigation itself), so a finished tab goes back to an idle pool of
      its context and the next URL navigates in it (scrapy-playwright's
      ``playwright_page``). A tab whose download failed is closed, never reused; a tab
      has its garbage collected every ``TAB_GC_EVERY`` pages and is retired after
      ``TAB_MAX_PAGES``. URLs with their own ``user_agent`` or ``viewport`` get a
      context for those options, closed when its last page is done.
    - Playwright bounds navigation and page methods, but not everything: closing a page
      after its browser was killed can wait forever, and one such request would keep the
      batch from finishing. Past the deadline the download fails with a (retryable) timeout.
    - After ``BATCH_BROWSER_RESTART_PAGES`` pages no new download starts; when the last
      running one ends the browser is closed, and the next page launches a fresh one (a
      crashed browser is relaunched by scrapy-playwright itself).
    """

    def __init__(self, crawler: Any) -> None:
        super().__init__(crawler)
        self.egress = start_egress_guard(crawler.settings)
        self.config.launch_options["args"] = [
            *self.config.launch_options.get("args", ()), *egress_args(self.egress)
        ]
        self.restart_after = crawler.settings.getint("BATCH_BROWSER_RESTART_PAGES")
        # downloads that hold a tab; the rest wait here, not on a context's page limit
        # (which idle tabs in the pool also count)
        self.tabs = asyncio.Semaphore(crawler.settings.getint("BATCH_BROWSER_MAX_PAGES"))
        self.idle_pages: dict[str, list[tuple[Page, int]]] = {}  # context -> (tab, pages done)
        self.pages_since_launch = 0
        self.running: Counter[str] = Counter()  # context -> downloads in it
        self.admitting = asyncio.Event()
        self.admitting.set()
        self.restarting = False

    async def _download_request(self, request: Request, spider: Any = None) -> Response:
        while not self.admitting.is_set():
            await self.admitting.wait()
        context = request.meta.setdefault("playwright_context", DEFAULT_CONTEXT_NAME)
        self.running[context] += 1
        self.pages_since_launch += 1
        if self.restart_after and self.pages_since_launch >= self.restart_after:
            self.admitting.clear()
        try:
            async with self.tabs:
                return await self._download_in_tab(request, spider, context)
        finally:
            self.running[context] -= 1
            if context != DEFAULT_CONTEXT_NAME and not self.running[context]:
                await self._close_context(context)
            if not (self.admitting.is_set() or self.running.total() or self.restarting):
                self.restarting = True
                try:
                    await self._restart_browser()
                finally:
                    self.restarting = False
                    self.admitting.set()

    async def _download_in_tab(self, request: Request, spider: Any, context: str) -> Response:
        idle = self.idle_pages.get(context, [])
        done = 0
        while idle:
            page, done = idle.pop()
            # a URL that differs from the tab's page only in its #fragment would not be
            # loaded (a same-document navigation): leave the page first
            if same_document(page.url, request.url) and not await responds(
                page.goto("about:blank")
            ):
                await close_quietly(page)
            if not page.is_closed():
                request.meta["playwright_page"] = page
                break
            done = 0
        request.meta["playwright_include_page"] = True
        watch = PageWatch(on_popup=lambda popup: asyncio.ensure_future(close_quietly(popup)))
        request.meta["playwright_page_event_handlers"] = watch.handlers()
        mark = self.egress.mark()
        timeout = float(request.meta.get("download_timeout", DEADLINE_MARGIN_SECONDS))
        deadline = timeout * DEADLINE_FACTOR + DEADLINE_MARGIN_SECONDS
        try:
            response = await asyncio.wait_for(super()._download_request(request, spider), deadline)
        except BaseException as exc:
            page = request.meta.pop("playwright_page", None)
            watch.detach(page)
            await close_quietly(page)
            if isinstance(exc, Exception):
                self._check_refusals(watch, mark, request.url, failed=True)
            if isinstance(exc, TimeoutError):
                raise DownloadTimeoutError(
                    f"the browser did not finish {request.url} within {deadline:.0f}s"
                ) from None
            raise
        page = request.meta.pop("playwright_page", None)
        watch.detach(page)
        try:
            self._check_refusals(watch, mark, request.url, failed=False)
        except FetchBlockedError:
            await close_quietly(page)
            raise
        await self._release_tab(context, page, done + 1)
        return response

    def _check_refusals(self, watch: PageWatch, mark: int, url: str, failed: bool) -> None:
        """Fail the download if the egress guard refused a connection this page asked for.

        Nothing was sent for a refused request, but the page is not what the site
        serves: FETCH_BLOCKED, naming the refused URL. A name the guard could not
        resolve failed the navigation itself: DNS_ERROR.
        """
        refusals = self.egress.refusals_since(mark)
        if not refusals:
            return
        blocked = watch.refused(refusals, "blocked")
        if blocked:
            self.stats.inc_value("batch/egress/refused", len(blocked))
            refused_url, refusal = blocked[0]
            raise FetchBlockedError(f"the browser asked for {refused_url}: {refusal.reason}")
        host = (urlsplit(url).hostname or "").lower()
        unresolved = [r for _, r in watch.refused(refusals, "unresolved") if r.host == host]
        if failed and unresolved:
            raise FetchError(unresolved[0].reason, code="DNS_ERROR", retryable=True)

    async def _release_tab(self, context: str, page: Page | None, done: int) -> None:
        """Put a tab that rendered ``done`` pages back in its context's pool, or retire it."""
        if page is None or page.is_closed():
            return
        if (
            done >= TAB_MAX_PAGES
            or context not in self.context_wrappers
            or (done % TAB_GC_EVERY == 0 and not await responds(collect_garbage(page)))
        ):
            await close_quietly(page)
            return
        self.idle_pages.setdefault(context, []).append((page, done))

    async def _close_context(self, name: str) -> None:
        """Close a context of per-URL options (and its tabs) once no page runs in it."""
        self.idle_pages.pop(name, None)
        wrapper = self.context_wrappers.pop(name, None)  # a new request opens a new one
        if wrapper is not None:
            await responds(wrapper.context.close())

    async def _close(self) -> None:
        try:
            await super()._close()
        finally:
            await asyncio.to_thread(self.egress.stop)

    async def _restart_browser(self) -> None:
        """Close the browser (no page runs); the next page launches a fresh one."""
        self.idle_pages.clear()
        self.pages_since_launch = 0
        browser = self.__dict__.pop("browser", None)
        if browser is None:
            return
        # forget it here rather than in scrapy-playwright's "disconnected" callback, which
        # could run late (a hung browser) and drop the browser that replaced this one
        browser.remove_listener("disconnected", self._browser_disconnected_callback)
        self.context_wrappers.clear()
        await responds(browser.close())
        self.stats.inc_value("batch/render/browser_restarts")


def same_document(current: str, target: str) -> bool:
    """Whether going from ``current`` to ``target`` changes only the #fragment."""
    return urldefrag(current).url == urldefrag(target).url


async def responds(work: Awaitable[Any]) -> bool:
    """Await browser ``work`` for at most ``DEADLINE_MARGIN_SECONDS``; False if it failed or hung.

    A killed or stuck browser can leave a close, navigation or CDP call waiting forever.
    """
    try:
        await asyncio.wait_for(work, DEADLINE_MARGIN_SECONDS)
    except Exception:
        return False
    return True


async def collect_garbage(page: Page) -> None:
    """A full garbage collection in the tab's renderer."""
    session = await page.context.new_cdp_session(page)
    await session.send("HeapProfiler.collectGarbage")
    await session.detach()


async def close_quietly(page: Page | None) -> None:
    """Close a tab that must not be reused; a dead browser cannot keep this waiting."""
    if page is not None and not page.is_closed():
        await responds(page.close())


# Resource types the browser does not load (images, fonts...): a cost saving, not a guard
# (the egress guard is). scrapy-playwright loads PLAYWRIGHT_ABORT_REQUEST by import
# path, so the spider sets this once per process from its settings.
blocked_resource_types: frozenset[str] = frozenset()


def configure_blocked_resources(resource_types: frozenset[str]) -> None:
    global blocked_resource_types
    blocked_resource_types = resource_types


async def abort_request(request: Any) -> bool:
    """scrapy-playwright hook: abort requests for the blocked resource types."""
    return request.resource_type in blocked_resource_types


def start_egress_guard(settings: Any) -> EgressGuard:
    """The crawl's egress guard, started, with the crawl's address policy."""
    policy = (
        AddressPolicy.from_settings(settings)
        if settings.getbool("BATCH_SSRF_GUARD_ENABLED")
        else ALLOW_ALL
    )
    guard = EgressGuard(
        policy,
        resolve=load_object(settings.get("BATCH_EGRESS_RESOLVER")),
        connect_timeout=settings.getfloat("BATCH_EGRESS_CONNECT_TIMEOUT"),
    )
    guard.start()
    return guard


def egress_args(guard: EgressGuard) -> list[str]:
    """Chromium flags that send every connection through ``guard`` and nowhere else."""
    return [
        f"--proxy-server={guard.url}",
        "--proxy-bypass-list=<-loopback>",  # loopback goes through the guard too
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # resolves nothing itself
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    ]
