"""Parse and validate a batch's inputs: URLs, schema, prompt and options.

One code path for the CLI (``-a`` strings, ``@file`` references) and the
HTTP API (decoded JSON). Everything is checked before anything is stored;
problems raise :mod:`batchscraper.exceptions` input errors that name the
argument and, for URLs, each bad entry's index.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from scrapy.settings import BaseSettings

from batchscraper.exceptions import (
    BatchInputError,
    InvalidOptionError,
    InvalidURLsError,
    LLMRequiredError,
    TooLargeError,
)
from batchscraper.inputs.extraction import (
    NEEDS_LLM,
    URL_EXTRACTION_KEYS,
    check_formats,
    url_extraction,
)
from batchscraper.inputs.retention import (
    MAX_CONTENT_RETENTION_DAYS,
    content_kept_problems,
    expires_in_seconds,
)
from batchscraper.inputs.schemas import SchemaLimits, parse_schema
from batchscraper.jsontypes import Document, JSONObject
from batchscraper.llm.config import LLMConfig
from batchscraper.proxies import ProxyEndpoint, parse_proxies, redacted
from batchscraper.render import BROWSER_KEYS, check_browser_options

RENDER_MODES = ("auto", "always", "never")
# the names users bring from other batch APIs for a URL's rendering mode
MODE_ALIASES = {
    "auto": "auto",
    "js": "always",
    "html": "never",
    "headless": "always",
    "fetch": "never",
}
GROUNDING_MODES = ("auto", "flag", "strict")
TEMPLATE_MODES = ("auto", "off", "only")
URL_KEYS = {
    "url", "render_js", "mode", "wait_for", "headers", "timeout", "proxy", *BROWSER_KEYS,
    *URL_EXTRACTION_KEYS,
}
MAX_URL_LENGTH = 2048
MAX_PROMPT_CHARS = 4000
MAX_REPORTED_URL_ERRORS = 50  # in details
MAX_LISTED_URL_ERRORS = 10  # in the message

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """What this deployment accepts: batch sizes (``BATCH_MAX_*`` settings), and whether an
    LLM endpoint is configured (a batch without a schema but with a prompt needs one)."""

    max_urls: int = 10_000
    max_total_items: int = 5_000
    schema: SchemaLimits = field(default_factory=SchemaLimits)
    # ``@file`` arguments are read from this machine's disk: the command line's
    # privilege only; over HTTP an ``@`` reference is an error, never a file read
    read_files: bool = False
    llm_configured: bool = True
    default_expires_in: int | None = None  # seconds: BATCH_RETENTION_DAYS (None: keep)

    @classmethod
    def from_settings(cls, settings: BaseSettings, *, read_files: bool = False) -> Limits:
        return cls(
            read_files=read_files,
            llm_configured=LLMConfig.from_settings(settings).configured,
            default_expires_in=round(settings.getfloat("BATCH_RETENTION_DAYS") * 86_400) or None,
            max_urls=settings.getint("BATCH_MAX_URLS"),
            max_total_items=settings.getint("BATCH_MAX_TOTAL_ITEMS"),
            schema=SchemaLimits(
                max_bytes=settings.getint("BATCH_MAX_SCHEMA_BYTES"),
                max_depth=settings.getint("BATCH_MAX_SCHEMA_DEPTH"),
            ),
        )


@dataclass(frozen=True)
class UrlSpec:
    """One input URL and its per-URL overrides."""

    url: str
    render_js: str | None = None
    wait_for: str | None = None
    headers: dict[str, str] | None = None
    timeout: float | None = None
    browser: dict[str, object] | None = None  # actions, screenshot, cookies, user_agent, viewport
    proxy: tuple[ProxyEndpoint, ...] | None = None
    # formats, extraction_schema, extraction_prompt, cache, cost_controls (inputs.extraction)
    extraction: JSONObject | None = None
    # why the entry is not a usable URL (``ignore_invalid_urls``: stored as a failed item)
    invalid: str | None = None

    def fetch_key(self) -> str:
        """Identical keys are fetched once (duplicate URLs share one fetch)."""
        proxies = [proxy.url for proxy in self.proxy] if self.proxy else None
        return json.dumps(
            [self.url, self.render_js, self.wait_for, self.headers, self.timeout, self.browser,
             proxies, self.extraction],
            sort_keys=True,
        )

    def request(self) -> dict[str, object]:
        """What the URL's object gave besides ``url``, as stored on its item."""
        given = {
            "render_js": self.render_js, "wait_for": self.wait_for, "headers": self.headers,
            "timeout": self.timeout,
        }
        return {key: value for key, value in given.items() if value is not None} | (
            self.browser or {}) | (self.extraction or {})


@dataclass(frozen=True)
class DateFilter:
    """Keep only records whose ``field`` falls in [``from``, ``to``]."""

    field: str
    start: dt.date | None = None
    end: dt.date | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "field": self.field,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
        }


@dataclass(frozen=True)
class BatchOptions:
    """A batch's options, each within its documented range."""

    max_items_per_url: int = 1
    max_total_items: int = 5_000
    concurrency: int = 8
    parallel_jobs: int = 1
    timeout_per_url: float = 30.0
    render_js: str = "auto"
    fail_fast: bool = False
    ignore_invalid_urls: bool = False
    expires_in: int | None = None  # seconds; None: kept (see inputs.retention)
    content_retention_days: int | None = None
    store_content: bool = True
    formats: tuple[str, ...] = ("json",)
    date_filter: DateFilter | None = None
    retries: int = 2
    max_llm_calls: int | None = None
    max_cost_usd: float | None = None
    grounding: str = "auto"
    robots_txt: bool = False
    proxy: tuple[ProxyEndpoint, ...] = ()
    max_age: int = 0
    templates: str = "auto"

    def to_dict(self) -> dict[str, object]:
        """The stored and shown form: proxies redacted (their credentials are kept apart)."""
        out = asdict(self)
        out["proxy"] = redacted(self.proxy)
        out["formats"] = list(self.formats)
        out["date_filter"] = self.date_filter.to_dict() if self.date_filter else None
        return out


# option name -> (kind, low, high); ranges are part of the public contract
OPTION_RANGES: dict[str, tuple[str, float, float]] = {
    "max_items_per_url": ("int", 1, 500),
    "max_total_items": ("int", 1, 0),  # high bound comes from Limits.max_total_items
    "concurrency": ("int", 1, 64),
    "parallel_jobs": ("int", 1, 10),
    "timeout_per_url": ("float", 1, 300),
    "retries": ("int", 0, 5),
    "max_llm_calls": ("int", 0, 10_000_000),
    "max_cost_usd": ("float", 0, 1_000_000),
    "max_age": ("int", 0, 31_536_000),  # seconds; a year
    "content_retention_days": ("int", 1, MAX_CONTENT_RETENTION_DAYS),
}
# options whose default is "no limit"
NULLABLE_OPTIONS = frozenset({"max_llm_calls", "max_cost_usd", "expires_in",
                              "content_retention_days"})
OPTION_NAMES = {f.name for f in fields(BatchOptions)}
# what a resumed batch (``-a batch_id=...``) may change for one run; the rest shapes its records
RUN_TIME_OPTIONS = ("concurrency", "timeout_per_url", "retries")


@dataclass(frozen=True)
class BatchSpec:
    """A fully validated batch, ready to be stored."""

    urls: list[UrlSpec]
    schema: JSONObject | None  # None: prompt-only or content-only (inputs.extraction)
    prompt: str | None = None
    options: BatchOptions = field(default_factory=BatchOptions)


def parse_batch(
    urls: object,
    schema: object,
    prompt: object = None,
    options: object = None,
    limits: Limits = Limits(),
    **option_args: object,
) -> BatchSpec:
    """Validate every input and return a :class:`BatchSpec`.

    ``urls``, ``schema`` and ``options`` may be ``@file`` references or JSON
    text (CLI) or already-decoded values (API). ``option_args`` are options
    given one by one (``-a concurrency=16``); they override ``options``.
    Every input is checked before anything is refused, so one error names
    every problem (:func:`input_problems`).
    """
    problems: list[tuple[str, BatchInputError]] = []

    def checked(name: str, parse: Callable[..., T], *args: object, **kwargs: object
                ) -> T | None:
        try:
            return parse(*args, **kwargs)
        except BatchInputError as exc:
            problems.append((name, exc))
            return None

    try:  # first, for ignore_invalid_urls; its problems are listed after the URLs'
        batch_options: BatchOptions | None = parse_options(options, limits, **option_args)
        options_problem = None
    except BatchInputError as exc:
        batch_options, options_problem = None, exc
    ignore = batch_options is not None and batch_options.ignore_invalid_urls
    url_specs = checked("urls", _required_urls, urls, limits, ignore)
    schema_doc = checked("schema", _optional_schema, schema, limits)
    prompt_text = checked("prompt", parse_prompt, prompt)
    if options_problem is not None:
        problems.append(("options", options_problem))
    schema_ok = schema_doc is not None or schema in (None, "")
    if schema_ok and batch_options is not None:
        checked("options", check_date_filter, batch_options.date_filter, schema_doc)
        checked("options", check_schemaless_options, batch_options, schema_doc)
    if url_specs is not None and batch_options is not None:
        checked("options", check_content_kept, batch_options, url_specs)
    if schema_ok and not limits.llm_configured:
        checked("prompt", check_llm_for_prompt, schema_doc, prompt_text)
        if url_specs is not None:
            checked("urls", check_llm_for_url_prompts, url_specs, schema_doc)
    if problems:
        raise input_problems(problems)
    assert batch_options is not None and url_specs is not None  # else a problem was raised
    return BatchSpec(urls=url_specs, schema=schema_doc, prompt=prompt_text, options=batch_options)


def parse_more_urls(
    urls: object, batch: Mapping[str, object], limits: Limits = Limits()
) -> list[UrlSpec]:
    """URLs to append to the stored ``batch``, checked as its own URLs were (its
    ``ignore_invalid_urls``; a URL prompt without a schema needs an LLM)."""
    stored = cast(Document, batch["options"])  # a batch's options are stored as a document
    options = parse_options(
        stored, replace(limits, max_total_items=cast(int, stored["max_total_items"])))
    try:
        specs = _required_urls(urls, limits, options.ignore_invalid_urls)
        if not limits.llm_configured:
            check_llm_for_url_prompts(specs, cast("JSONObject | None", batch.get("schema")))
    except BatchInputError as exc:  # reported as for a new batch: field, code, index
        raise input_problems([("urls", exc)]) from None
    return specs


def _required_urls(urls: object, limits: Limits, ignore_invalid: bool) -> list[UrlSpec]:
    if urls is None or urls == "":
        raise BatchInputError("urls: missing; give a list, a comma-separated string or @file")
    return parse_urls(urls, limits, ignore_invalid=ignore_invalid)


def _optional_schema(schema: object, limits: Limits) -> JSONObject | None:
    """The batch's schema; None when there is none (prompt-only or content-only)."""
    if schema is None or schema == "":
        return None
    return parse_schema(_read_at_file(schema, "schema", limits), limits.schema)


def check_llm_for_prompt(schema: JSONObject | None, prompt: str | None) -> None:
    """A prompt without a schema is answered by an LLM only."""
    if schema is None and prompt:
        raise LLMRequiredError(f"prompt: {NEEDS_LLM}")


def check_llm_for_url_prompts(urls: list[UrlSpec], schema: JSONObject | None) -> None:
    """URLs whose ``extraction_prompt`` has no schema (their own or the batch's) need an LLM."""
    problems = [
        {"index": index, "url": spec.url, "reason": NEEDS_LLM}
        for index, spec in enumerate(urls)
        if spec.extraction and spec.extraction.get("extraction_prompt")
        and schema is None and not spec.extraction.get("extraction_schema")
    ]
    if problems:
        raise LLMRequiredError(
            f"urls: {len(problems)} with extraction_prompt and no schema: {NEEDS_LLM}",
            details=problems[:MAX_REPORTED_URL_ERRORS],
        )


def check_schemaless_options(options: BatchOptions, schema: JSONObject | None) -> None:
    """Options that need the batch's schema: list pages and the date filter."""
    if schema is not None:
        return
    problems = []
    if options.max_items_per_url > 1:
        problems.append({"option": "max_items_per_url",
                         "message": "max_items_per_url: above 1 needs a schema"})
    if options.date_filter is not None:
        problems.append({"option": "date_filter", "message": "date_filter: needs a schema"})
    if problems:
        raise InvalidOptionError("; ".join(p["message"] for p in problems), details=problems)


def check_content_kept(options: BatchOptions, urls: list[UrlSpec]) -> None:
    """``store_content: false`` and nothing that would keep page content."""
    problems = content_kept_problems(options.store_content, options.formats, urls)
    if problems:
        raise InvalidOptionError("; ".join(p["message"] for p in problems), details=problems)


def check_date_filter(date_filter: DateFilter | None, schema: JSONObject | None) -> None:
    """A ``date_filter`` must name a field of the schema, or it would filter nothing."""
    fields = schema.get("properties") if schema is not None else None
    if date_filter is None or not isinstance(fields, dict) or date_filter.field in fields:
        return
    message = (f"date_filter.field: {date_filter.field!r} is not a field of the schema;"
               f" one of {sorted(fields)}")
    raise InvalidOptionError(message, details=[{"option": "date_filter", "message": message}])


def input_problems(problems: list[tuple[str, BatchInputError]]) -> BatchInputError:
    """One error for every refused input: the first one's code and HTTP status, a message
    naming each problem, and ``details`` listing each (tagged with its ``field`` and
    ``code``: a URL by ``index``, a schema problem by ``path``, an option by ``option``)."""
    first = problems[0][1]
    details: list[object] = []
    for name, exc in problems:
        entries = exc.details if isinstance(exc.details, list) else [{"message": exc.message}]
        details += [{"field": name, "code": exc.code, **entry} for entry in entries]
    if len(problems) == 1 and not isinstance(first.details, list):
        return first
    error = type(first)("; ".join(exc.message for _, exc in problems), details=details)
    error.code = first.code
    return error


def parse_prompt(prompt: object) -> str | None:
    """Return the extraction instructions, or None."""
    if prompt is None or prompt == "":
        return None
    if not isinstance(prompt, str):
        raise BatchInputError("prompt: must be a string")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BatchInputError(f"prompt: {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    return prompt


# -- URLs --------------------------------------------------------------------


def parse_urls(
    raw: object, limits: Limits = Limits(), *, ignore_invalid: bool = False
) -> list[UrlSpec]:
    """Parse URLs from a list, JSON text, a separated string, or ``@file``.

    ``ignore_invalid``: a bad entry does not refuse the list; it is kept as a
    :class:`UrlSpec` whose ``invalid`` says why (its item is stored failed).
    """
    entries = _url_entries(raw, limits)
    if not entries:
        raise InvalidURLsError("urls: the list is empty")
    if len(entries) > limits.max_urls:
        raise TooLargeError(
            f"urls: {len(entries)} URLs; the limit is {limits.max_urls} (BATCH_MAX_URLS)"
        )
    specs: list[UrlSpec] = []
    problems: list[dict[str, object]] = []
    for index, entry in enumerate(entries):
        try:
            specs.append(_url_spec(entry, limits))
        except ValueError as exc:
            problems.append({"index": index, "url": _shown(entry), "reason": str(exc)})
            if ignore_invalid:
                specs.append(UrlSpec(url=_shown(entry), invalid=str(exc)))
    if problems and not ignore_invalid:
        shown = "; ".join(f"index {p['index']} ({p['url']!r}): {p['reason']}"
                          for p in problems[:MAX_LISTED_URL_ERRORS])
        more = len(problems) - MAX_LISTED_URL_ERRORS
        raise InvalidURLsError(
            f"urls: {len(problems)} invalid: {shown}" + (f"; and {more} more" if more > 0 else ""),
            details=problems[:MAX_REPORTED_URL_ERRORS],
        )
    return specs


def _url_entries(raw: object, limits: Limits) -> list[object]:
    if isinstance(raw, list):
        return raw
    if not isinstance(raw, str):
        raise InvalidURLsError("urls: must be a list or a string")
    text = raw.strip()
    if text.startswith("@"):
        return _url_entries_from_file(_file_path(text, "urls", limits))
    if text.startswith("["):
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BatchInputError(f"urls: not valid JSON: {exc.msg} at char {exc.pos}") from None
        if not isinstance(decoded, list):
            raise InvalidURLsError("urls: JSON must be an array")
        return cast(list[object], decoded)
    separator = "\n" if "\n" in text else ","
    return [part.strip() for part in text.split(separator) if part.strip()]


def _url_entries_from_file(path: Path) -> list[object]:
    text = _read_file(path, "urls")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BatchInputError(f"urls: {path} is not valid JSON: {exc.msg}") from None
        if not isinstance(decoded, list):
            raise InvalidURLsError(f"urls: {path} must hold a JSON array")
        return cast(list[object], decoded)
    if suffix == ".jsonl":
        entries: list[object] = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    raise BatchInputError(f"urls: {path} line {number} is not valid JSON") from None
        return entries
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if "url" not in (reader.fieldnames or []):
            raise BatchInputError(f"urls: {path} has no 'url' column")
        return [row["url"].strip() for row in reader if (row.get("url") or "").strip()]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _url_spec(entry: object, limits: Limits) -> UrlSpec:
    if isinstance(entry, str):
        return UrlSpec(url=check_url(entry))
    if not isinstance(entry, dict):
        raise ValueError("must be a URL string or an object with 'url'")
    unknown = set(entry) - URL_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(URL_KEYS)}")
    render = entry.get("render_js", entry.get("mode"))
    if render is not None:
        render = MODE_ALIASES.get(str(render), str(render)) if "mode" in entry else str(render)
        if render not in RENDER_MODES:
            raise ValueError(f"render_js must be one of {list(RENDER_MODES)}")
    headers = entry.get("headers")
    if headers is not None and not (
        isinstance(headers, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        raise ValueError("headers must be an object of strings")
    wait_for = entry.get("wait_for")
    if wait_for is not None and not isinstance(wait_for, str):
        raise ValueError("wait_for must be a CSS selector string")
    timeout = entry.get("timeout")
    if timeout is not None:
        timeout = _in_range("timeout", timeout, "float", 1, 300, ValueError)
    proxy = entry.get("proxy")
    if proxy is not None:
        try:
            proxy = parse_proxies(proxy)
        except ValueError as exc:
            raise ValueError(f"proxy: {exc}") from None
    return UrlSpec(
        url=check_url(entry.get("url")),
        render_js=render,
        wait_for=wait_for,
        headers=headers,
        timeout=timeout,
        browser=check_browser_options(entry),
        proxy=proxy,
        extraction=url_extraction(entry, limits.schema),
    )


def check_url(url: object) -> str:
    """Return ``url`` if it is an absolute http(s) URL we will fetch, else raise ValueError."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("empty URL")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() for ch in url):
        raise ValueError("contains whitespace")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ValueError("contains control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"malformed: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("only http and https URLs are fetched")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in URLs are not accepted")
    if port == 0:
        raise ValueError("port 0 is not valid")
    return url


def _shown(entry: object) -> str:
    text = entry.get("url") if isinstance(entry, dict) else entry
    return str(text)[:200]


# -- options -----------------------------------------------------------------


def run_time_options(options: BatchOptions, **option_args: object) -> BatchOptions:
    """``options`` with the run-time options given for this run (checked like any option)."""
    given = {k: v for k, v in option_args.items() if k in RUN_TIME_OPTIONS and v is not None}
    parsed = parse_options(given)
    return replace(options, **{name: getattr(parsed, name) for name in given})


def parse_options(raw: object = None, limits: Limits = Limits(), **option_args: object
                  ) -> BatchOptions:
    """Parse options from JSON text, ``@file``, a dict, and/or single arguments."""
    raw = _read_at_file(raw, "options", limits) if raw not in (None, "") else {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BatchInputError(f"options: not valid JSON: {exc.msg} at char {exc.pos}") from None
    if not isinstance(raw, Mapping):
        raise InvalidOptionError("options: must be a JSON object")
    merged = {**raw, **{k: v for k, v in option_args.items() if v is not None}}
    problems: list[dict[str, str]] = []
    unknown = set(merged) - OPTION_NAMES
    if unknown:
        problems += [{"option": name, "message": f"{name}: unknown option"}
                     for name in sorted(unknown)]
    values: dict[str, Any] = {}
    for name in sorted(set(merged) & OPTION_NAMES, key=list(merged).index):
        try:
            values[name] = _option_value(name, merged[name], limits)
        except InvalidOptionError as exc:
            problems.append({"option": name, "message": exc.message})
    if problems:
        messages = [p["message"] for p in problems if p["option"] not in unknown]
        if unknown:
            messages.insert(0, f"options: unknown {sorted(unknown)}; known: {sorted(OPTION_NAMES)}")
        raise InvalidOptionError("; ".join(messages), details=problems)
    defaults = BatchOptions(max_total_items=limits.max_total_items,
                            expires_in=limits.default_expires_in)
    return replace(defaults, **values)


def _option_value(name: str, value: object, limits: Limits) -> object:
    if name in NULLABLE_OPTIONS and value in (None, "", "none", "null"):
        return None
    if name in OPTION_RANGES:
        kind, low, high = OPTION_RANGES[name]
        if name == "max_total_items":
            high = limits.max_total_items
        return _in_range(name, value, kind, low, high, InvalidOptionError)
    if name == "render_js":
        text = MODE_ALIASES.get(str(value), str(value))
        if text not in RENDER_MODES:
            raise InvalidOptionError(f"render_js: must be one of {list(RENDER_MODES)}")
        return text
    if name == "expires_in":
        return expires_in_seconds(value)
    if name in ("fail_fast", "robots_txt", "ignore_invalid_urls", "store_content"):
        return _boolean(name, value)
    if name == "formats":
        return check_formats(value, InvalidOptionError)
    if name == "date_filter":
        return _date_filter(value)
    if name == "proxy":
        try:
            return parse_proxies(value) if value not in (None, "", []) else ()
        except ValueError as exc:
            raise InvalidOptionError(f"proxy: {exc}") from None
    if name == "grounding":
        if value not in GROUNDING_MODES:
            raise InvalidOptionError(f"grounding: must be one of {list(GROUNDING_MODES)}")
        return value
    if name == "templates":
        if value not in TEMPLATE_MODES:
            raise InvalidOptionError(f"templates: must be one of {list(TEMPLATE_MODES)}")
        return value
    raise InvalidOptionError(f"options: unknown {name!r}")


def _in_range(
    name: str, value: object, kind: str, low: float, high: float, error: type[Exception]
) -> float:
    try:
        number = float(str(value)) if kind == "float" else int(str(value), 10)
    except (TypeError, ValueError):
        raise error(f"{name}: must be {'a number' if kind == 'float' else 'an integer'}") from None
    if isinstance(value, bool) or not low <= number <= high:
        raise error(f"{name}: must be between {low:g} and {high:g}, got {value!r}")
    return number


def _boolean(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise InvalidOptionError(f"{name}: must be true or false")


def _date_filter(value: object) -> DateFilter | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InvalidOptionError("date_filter: must be a JSON object") from None
    if not isinstance(value, dict) or not isinstance(value.get("field"), str):
        raise InvalidOptionError('date_filter: needs {"field": ..., "from": date, "to": date}')
    unknown = set(value) - {"field", "from", "to"}
    if unknown:
        raise InvalidOptionError(f"date_filter: unknown keys {sorted(unknown)}")
    bounds = {}
    for key in ("from", "to"):
        if value.get(key) is not None:
            try:
                bounds[key] = dt.date.fromisoformat(str(value[key])[:10])
            except ValueError:
                raise InvalidOptionError(f"date_filter.{key}: not an ISO date") from None
    if not bounds:
        raise InvalidOptionError("date_filter: give 'from', 'to' or both")
    return DateFilter(field=value["field"], start=bounds.get("from"), end=bounds.get("to"))


# -- files -------------------------------------------------------------------


def _read_at_file(value: object, argument: str, limits: Limits) -> object:
    if isinstance(value, str) and value.strip().startswith("@"):
        return _read_file(_file_path(value.strip(), argument, limits), argument)
    return value


def _file_path(reference: str, argument: str, limits: Limits) -> Path:
    if not limits.read_files:
        raise BatchInputError(
            f"{argument}: @file references are read on the command line only; send the content"
        )
    return Path(reference[1:])


def _read_file(path: Path, argument: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BatchInputError(f"{argument}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BatchInputError(f"{argument}: {path} is not UTF-8 text") from None
