"""The download handler that drives Chromium: reused tabs, hard deadlines, restarts, egress guard.

:mod:`batchscraper.render` decides when a page needs the browser and what the
request asks of it; this module is the scrapy-playwright handler that does it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from playwright.async_api import Page, WebSocket, Worker
from playwright.async_api import Request as PlaywrightRequest
from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import DownloadTimeoutError
from scrapy.http import Response
from scrapy_playwright.handler import DEFAULT_CONTEXT_NAME, ScrapyPlaywrightDownloadHandler

from batchscraper.downloadermiddlewares.ssrf import FetchBlockedError, normalised_host
from batchscraper.egress import EgressGuard, crawl_guard
from batchscraper.egress_routes import Refusal, Route
from batchscraper.exceptions import DNSError
from batchscraper.upstream import UpstreamProxyError

# A browser download (navigation, page methods, settle, page close) gets this long in all
# before it is abandoned: twice the page timeout, plus a margin for the browser itself.
DEADLINE_FACTOR = 2
DEADLINE_MARGIN_SECONDS = 5.0
# A reused tab's renderer collects its garbage lazily (170 MB after 125 pages, 33 MB after
# a collection that takes ~5 ms): collect every this many pages. A tab is retired (closed,
# replaced by a new one) after TAB_MAX_PAGES, which also frees the driver's objects for it.
TAB_GC_EVERY = 20
TAB_MAX_PAGES = 200


DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
ROUTE_CONTEXT = f"{DEFAULT_CONTEXT_NAME}|route-"  # a proxy's context (no per-URL options)


class PageWatch:
    """The hosts one browser download asked for, so the guard's refusals can be attributed.

    Its handlers go on the download's page (scrapy-playwright's
    ``playwright_page_event_handlers``): every request of every frame, redirect
    hops and worker requests included, WebSockets, workers and popups.
    """

    def __init__(self, on_popup: Callable[[Page], object]) -> None:
        self.targets: dict[tuple[str, int], str] = {}  # (host, port) -> first URL asking for it
        self.on_popup = on_popup

    def handlers(self) -> dict[str, Callable[..., None]]:
        return {
            "request": self.saw_request,
            "websocket": self.saw_request,
            "worker": self.saw_request,
            "popup": self.saw_popup,
        }

    def detach(self, page: Page | None) -> None:
        """Take the handlers off a page that will be reused for another download."""
        if page is not None:
            for event, handler in self.handlers().items():
                with contextlib.suppress(Exception):
                    page.remove_listener(event, handler)

    def saw_request(self, request: PlaywrightRequest | WebSocket | Worker | Page) -> None:
        """A request, WebSocket or worker (anything with a ``url``)."""
        parts = urlsplit(request.url)
        if parts.scheme in DEFAULT_PORTS and parts.hostname:
            with contextlib.suppress(ValueError):
                port = parts.port or DEFAULT_PORTS[parts.scheme]
                self.targets.setdefault((normalised_host(parts.hostname), port), request.url)

    def saw_popup(self, popup: Page) -> None:
        self.saw_request(popup)
        popup.on("request", self.saw_request)
        self.on_popup(popup)

    def refused(self, refusals: list[Refusal], kind: str) -> list[tuple[str, Refusal]]:
        """(URL this page asked for, refusal) for each refusal of ``kind`` aimed at this page."""
        return [
            (self.targets[(refusal.host, refusal.port)], refusal)
            for refusal in refusals
            if refusal.kind == kind and (refusal.host, refusal.port) in self.targets
        ]


class BoundedPlaywrightHandler(ScrapyPlaywrightDownloadHandler):
    """scrapy-playwright's handler with tabs reused, a deadline per download and browser restarts.

    - Tabs are reused: a new tab costs Chromium a renderer process (about 115 ms of CPU
      here, twice the navigation itself), so a finished tab goes back to an idle pool of
      its context and the next URL navigates in it (scrapy-playwright's
      ``playwright_page``). A tab whose download failed is closed, never reused; a tab
      has its garbage collected every ``TAB_GC_EVERY`` pages and is retired after
      ``TAB_MAX_PAGES``. URLs with their own ``user_agent`` or ``viewport`` get a
      context for those options, closed when its last page is done. Pages through a
      proxy render in a context per proxy (its proxy: the egress guard's route through
      it); up to ``BATCH_BROWSER_MAX_PAGES`` idle ones are kept for their tabs, the least
      recently used closed first. Idle tabs are at most ``BATCH_BROWSER_MAX_PAGES`` in all.
    - Playwright bounds navigation and page methods, but not everything: closing a page
      after its browser was killed can wait forever, and one such request would keep the
      batch from finishing. Past the deadline the download fails with a (retryable) timeout.
    - The Playwright driver (a Node process) starts with the first page to render, not
      with the crawl.
    - After ``BATCH_BROWSER_RESTART_PAGES`` pages no new download starts; when the last
      running one ends the browser is closed, and the next page launches a fresh one (a
      crashed browser is relaunched by scrapy-playwright itself).
    """

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        # started with the first browser: a crawl that renders nothing listens on nothing
        self.egress = crawl_guard(crawler)
        self.launch_args = list(self.config.launch_options.get("args", ()))
        self.closing: set[asyncio.Future[None]] = set()  # popups being closed
        # resource types not loaded (images, fonts...): a saving, not a guard (the egress
        # guard is); scrapy-playwright asks this before each request of a page
        self.blocked_resource_types = frozenset(
            crawler.settings.getlist("BATCH_BROWSER_BLOCKED_RESOURCES")
        )
        self.abort_request = self._is_blocked_resource
        self.restart_after = crawler.settings.getint("BATCH_BROWSER_RESTART_PAGES")
        # downloads that hold a tab; the rest wait here, not on a context's page limit
        # (which idle tabs in the pool also count)
        self.max_pages = crawler.settings.getint("BATCH_BROWSER_MAX_PAGES")
        self.tabs = asyncio.Semaphore(self.max_pages)
        self.route_contexts: dict[str, None] = {}  # proxies' contexts, least recently used first
        self.idle_pages: dict[str, list[tuple[Page, int]]] = {}  # context -> (tab, pages done)
        self.pages_since_launch = 0
        self.running: Counter[str] = Counter()  # context -> downloads in it
        self.admitting = asyncio.Event()
        self.admitting.set()
        self.restarting = False
        self.driver_lock = asyncio.Lock()

    async def _maybe_launch_in_thread(self) -> None:
        """Nothing at engine start: the Playwright driver starts with the first page to render.

        scrapy-playwright starts it when the engine starts, and the engine waits for it
        (about a second, per scheme's handler) before the first request of every crawl,
        rendering or not.
        """

    async def _maybe_launch_browser(self) -> None:
        """Launch the browser (if none runs) only with its egress guard listening."""
        self.egress.start()  # OSError: the download fails, no browser runs unguarded
        self.config.launch_options["args"] = [*self.launch_args, *egress_args(self.egress)]
        async with self.driver_lock:
            if getattr(self, "browser_provider", None) is None:
                await self._launch()
        await super()._maybe_launch_browser()

    def _is_blocked_resource(self, request: PlaywrightRequest) -> bool:
        return request.resource_type in self.blocked_resource_types

    def _close_popup(self, popup: Page) -> None:
        task = asyncio.ensure_future(close_quietly(popup))
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)

    async def _download_request(self, request: Request, spider: Spider | None = None) -> Response:
        while not self.admitting.is_set():
            await self.admitting.wait()
        context = context_for(request)
        self.running[context] += 1
        self.pages_since_launch += 1
        if self.restart_after and self.pages_since_launch >= self.restart_after:
            self.admitting.clear()
        try:
            async with self.tabs:
                return await self._download_in_tab(request, spider, context)
        finally:
            self.running[context] -= 1
            if context.startswith(ROUTE_CONTEXT) and not self.running[context]:
                await self._keep_route_context(context)
            elif context != DEFAULT_CONTEXT_NAME and not self.running[context]:
                await self._close_context(context)
            if not (self.admitting.is_set() or self.running.total() or self.restarting):
                self.restarting = True
                try:
                    await self._restart_browser()
                finally:
                    self.restarting = False
                    self.admitting.set()

    async def _download_in_tab(
        self, request: Request, spider: Spider | None, context: str
    ) -> Response:
        idle = self.idle_pages.get(context, [])
        done = 0
        while idle:
            page, done = idle.pop()
            if not page.is_closed():
                request.meta["playwright_page"] = page
                break
            done = 0
        request.meta["playwright_include_page"] = True
        watch = PageWatch(on_popup=self._close_popup)
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
                self._check_refusals(watch, mark, request, failed=True)
            if isinstance(exc, TimeoutError):
                raise DownloadTimeoutError(
                    f"the browser did not finish {request.url} within {deadline:.0f}s"
                ) from None
            raise
        page = request.meta.pop("playwright_page", None)
        watch.detach(page)
        try:
            self._check_refusals(watch, mark, request, failed=False)
        except (FetchBlockedError, UpstreamProxyError):  # the tab is not reused
            await close_quietly(page)
            raise
        await self._release_tab(context, page, done + 1)
        return response

    def _check_refusals(
        self, watch: PageWatch, mark: int, request: Request, failed: bool
    ) -> None:
        """Fail the download if the egress guard refused a connection this page asked for.

        Nothing was sent for a refused request, but the page is not what the site
        serves: FETCH_BLOCKED, naming the refused URL. When the page's proxy failed
        on the page's own URL, the proxy is to blame (the rotation middleware
        benches it). A name the guard could not resolve failed the navigation
        itself: DNS_ERROR.
        """
        refusals = self.egress.refusals_since(mark)
        if not refusals:
            return
        blocked = watch.refused(refusals, "blocked")
        if blocked:
            self.stats.inc_value("batch/egress/refused", len(blocked))
            refused_url, refusal = blocked[0]
            raise FetchBlockedError(f"the browser asked for {refused_url}: {refusal.reason}")
        parts = urlsplit(request.url)
        host = normalised_host(parts.hostname or "")
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
        route: Route | None = request.meta.get("batch_egress_route")
        failed_proxy = [r for _, r in watch.refused(refusals, "proxy")
                        if route is not None and (r.route, r.host, r.port) == (
                            route.number, host, port)]
        if failed_proxy:
            raise UpstreamProxyError(None, failed_proxy[0].reason)
        unresolved = [r for _, r in watch.refused(refusals, "unresolved") if r.host == host]
        if failed and unresolved:
            raise DNSError(unresolved[0].reason)

    async def _release_tab(self, context: str, page: Page | None, done: int) -> None:
        """Put a tab that rendered ``done`` pages back in its context's pool, or retire it."""
        if page is None or page.is_closed():
            return
        # an idle tab leaves its page: the page's scripts stop (no requests, no CPU, no
        # refusals blamed on the tab's next page), and a next URL that differs only in its
        # #fragment is loaded rather than scrolled to
        if (
            done >= TAB_MAX_PAGES
            or sum(len(tabs) for tabs in self.idle_pages.values()) >= self.max_pages
            or context not in self.context_wrappers
            or not await responds(page.goto("about:blank"))
            or (done % TAB_GC_EVERY == 0 and not await responds(collect_garbage(page)))
        ):
            await close_quietly(page)
            return
        self.idle_pages.setdefault(context, []).append((page, done))

    async def _keep_route_context(self, name: str) -> None:
        """Keep an idle proxy's context (its tabs are reused), closing the least recently
        used idle ones beyond ``BATCH_BROWSER_MAX_PAGES``."""
        self.route_contexts.pop(name, None)
        self.route_contexts[name] = None
        idle = [context for context in self.route_contexts if not self.running[context]]
        for context in idle[: max(len(idle) - self.max_pages, 0)]:
            if not self.running[context]:  # a page may have started in it meanwhile
                self.route_contexts.pop(context, None)
                await self._close_context(context)

    async def _close_context(self, name: str) -> None:
        """Close a context of per-URL options (and its tabs) once no page runs in it."""
        self.idle_pages.pop(name, None)
        wrapper = self.context_wrappers.pop(name, None)  # a new request opens a new one
        if wrapper is not None:
            await responds(wrapper.context.close())

    async def _restart_browser(self) -> None:
        """Close the browser (no page runs); the next page launches a fresh one."""
        self.idle_pages.clear()
        self.route_contexts.clear()
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


async def responds(work: Awaitable[object]) -> bool:
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


def context_for(request: Request) -> str:
    """The browser context a request renders in, set in its meta.

    Its own (``playwright_context``: the shared one, or one for its per-URL
    options), or, on a proxy's route, a context of those options whose proxy
    is that route of the egress guard (``bypass`` keeps loopback on it too).
    """
    meta = request.meta
    base = meta.setdefault("batch_context", meta.get("playwright_context", DEFAULT_CONTEXT_NAME))
    options = meta.setdefault("batch_context_kwargs", meta.get("playwright_context_kwargs") or {})
    route: Route | None = meta.get("batch_egress_route")
    if route is None:
        name, kwargs = base, options
    else:
        name = f"{base}|route-{route.number}"  # ROUTE_CONTEXT when base is the shared one
        kwargs = {**options, "proxy": {"server": route.url, "bypass": "<-loopback>"}}
    meta["playwright_context"] = name
    if kwargs:
        meta["playwright_context_kwargs"] = kwargs
    return name


def egress_args(guard: EgressGuard) -> list[str]:
    """Chromium flags that send every connection through ``guard`` and nowhere else."""
    return [
        f"--proxy-server={guard.url}",
        "--proxy-bypass-list=<-loopback>",  # loopback goes through the guard too
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # resolves nothing itself
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    ]
