"""Headless rendering: when a page needs a browser, and what its request asks of the browser.

The HTTP fetch is the default. A request goes to Chromium (through
scrapy-playwright) when its URL or batch says ``render_js: always``, or in
``auto`` mode when the fetched HTML is an app shell (:func:`app_shell_reason`)
or extraction leaves required fields empty (the spider escalates).
:mod:`batchscraper.browser` is the download handler that drives Chromium.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict, cast

import lxml.html
from lxml.etree import ParserError
from scrapy.settings import BaseSettings
from scrapy_playwright.page import PageMethod

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
# what marks an app shell, and how its render_reason says so
APP_SHELL_MARKERS = (
    (re.compile(r"<div[^>]+id=[\"'](root|app|__next|__nuxt|svelte)[\"'][^>]*>\s*</div>", re.I),
     "an empty root <div> for a script to fill"),
    (re.compile(r"<noscript>[^<]*(enable|requires?)\s+javascript", re.I),
     "a <noscript> asking for JavaScript"),
    (re.compile(
        r"ng-version=|data-reactroot|__NEXT_DATA__|window\.__NUXT__|data-server-rendered", re.I
    ), "a JavaScript framework's marker"),
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
    app_shell_max_text: int
    max_body_bytes: int
    settle_ms: int
    settle_max_ms: int

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> RenderConfig:
        return cls(
            chromium_path=chromium_executable(settings.get("BATCH_CHROMIUM_PATH")),
            max_pages=settings.getint("BATCH_BROWSER_MAX_PAGES"),
            app_shell_max_text=settings.getint("BATCH_APP_SHELL_MAX_TEXT"),
            max_body_bytes=settings.getint("DOWNLOAD_MAXSIZE"),
            settle_ms=settings.getint("BATCH_BROWSER_SETTLE_MS"),
            settle_max_ms=settings.getint("BATCH_BROWSER_SETTLE_MAX_MS"),
        )

    def scrapy_settings(self) -> dict[str, object]:
        """The scrapy-playwright settings for a crawl that may render pages."""
        handler = "batchscraper.browser.BoundedPlaywrightHandler"
        return {
            "DOWNLOAD_HANDLERS": {"http": handler, "https": handler},
            "PLAYWRIGHT_BROWSER_TYPE": "chromium",
            "PLAYWRIGHT_LAUNCH_OPTIONS": {
                "executable_path": self.chromium_path,
                "headless": True,
                "args": list(CHROMIUM_ARGS),
            },
            # the shared context, one per set of per-URL options (user_agent, viewport)
            # or proxy in use (at most max_pages: a page each), and up to max_pages idle
            # proxies' contexts kept for their tabs
            "PLAYWRIGHT_MAX_CONTEXTS": 2 * self.max_pages + 1,
            "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": self.max_pages,
        }


class BrowserAction(TypedDict, total=False):
    """One checked ``actions`` entry: its ``type`` and the keys ACTION_KINDS names for it."""

    type: str
    selector: str
    ms: int | float | str
    value: str
    key: str


def check_browser_options(entry: Mapping[str, object]) -> dict[str, object] | None:
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
    """Why this HTML looks like a JavaScript app shell (content rendered client-side), or None.

    Little visible text (at most ``max_text`` characters) together with a marker: an
    empty root ``<div>``, a ``<noscript>`` asking for JavaScript, or a framework's.
    """
    try:
        tree = lxml.html.document_fromstring(html)
    except (ParserError, ValueError):
        return None
    for element in tree.xpath("//script | //style | //noscript | //template"):
        element.drop_tree()
    visible = len(" ".join(tree.text_content().split()))
    if visible > max_text:
        return None
    # short text alone is no sign: small pages exist; a shell is the markup a script fills
    for marker, words in APP_SHELL_MARKERS:
        if marker.search(html):
            return f"app shell: {visible} characters of text and {words}"
    return None


def browser_meta(
    request_options: Mapping[str, object], timeout: float, config: RenderConfig
) -> dict[str, object]:
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
    # checked by check_browser_options when the batch was submitted
    for action in cast("list[BrowserAction]", request_options.get("actions") or ()):
        methods.append(page_method_for(action, timeout))
    if request_options.get("screenshot"):
        methods.append(PageMethod("screenshot", type="png", full_page=True))
    context_kwargs = {
        key: request_options[key] for key in ("user_agent", "viewport") if request_options.get(key)
    }
    meta: dict[str, object] = {
        "playwright": True,
        "playwright_page_goto_kwargs": {"wait_until": "load", "timeout": timeout * 1000},
        "playwright_page_methods": methods,
    }
    if context_kwargs:
        # contexts are keyed by their options, so pages with equal options share one
        meta["playwright_context"] = "ctx-" + str(sorted(context_kwargs.items()))
        meta["playwright_context_kwargs"] = context_kwargs
    return meta


def page_method_for(action: BrowserAction, timeout: float) -> PageMethod:
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


def screenshot_from(meta: Mapping[str, object]) -> bytes | None:
    """The PNG taken by a ``screenshot`` page method, if any."""
    for method in cast("list[PageMethod]", meta.get("playwright_page_methods") or ()):
        if method.method == "screenshot" and isinstance(method.result, bytes):
            return method.result
    return None
