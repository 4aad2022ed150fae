"""What a batch extracts, and the per-URL extraction options of a URL object.

A batch extracts in one of three ways, chosen per URL:

- ``schema``: a record matching a JSON Schema (the batch's, or the URL's own
  ``extraction_schema`` / ``extraction_profile``);
- ``prompt``: no schema but a prompt: the LLM answers a free-form JSON object
  (``schema: null`` on the record), which needs an LLM endpoint;
- ``content``: neither: the record is the page's metadata, and the page itself
  is kept in the URL's ``formats``.

The per-URL keys are the ones of the AlterLab batch body: ``formats``,
``extraction_schema``, ``extraction_prompt``, ``extraction_profile``
(``auto``: the batch's schema), ``include_raw_html`` (adds ``html`` to the
formats), ``cache`` and ``cost_controls`` (accepted; see the README).
They are stored under the item's ``request`` with these same names, so a
re-run (``rerun_of``) reads them back as they were given.
"""

from __future__ import annotations

from collections.abc import Mapping

from batchscraper.exceptions import BatchInputError
from batchscraper.inputs.profiles import PROFILE_PREFIX, profile_names
from batchscraper.inputs.schemas import SchemaLimits, parse_schema
from batchscraper.jsontypes import JSONObject, JSONValue

FORMATS = ("json", "markdown", "text", "html")
URL_EXTRACTION_KEYS = frozenset({
    "formats", "extraction_schema", "extraction_prompt", "extraction_profile",
    "include_raw_html", "cache", "cost_controls",
})
# AlterLab's tier controls: accepted so its bodies work as written; batchscraper has no tiers
COST_CONTROL_KEYS = frozenset({"force_tier", "max_tier", "prefer_cost", "prefer_speed",
                               "fail_fast"})
AUTO_PROFILE = "auto"
MAX_PROMPT_CHARS = 4000
#: the kept content of a batch that extracts no data, when its formats name none
CONTENT_DEFAULT_FORMATS = ("markdown",)
NEEDS_LLM = "a prompt-only batch needs an LLM endpoint (OPENAI_BASE_URL or OPENAI_API_KEY)"


def check_formats(value: object, error: type[Exception]) -> tuple[str, ...]:
    """A list (or comma-separated string) of known formats, without repeats."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise error(f"formats: must be a list of {list(FORMATS)}")
    bad = [item for item in items if item not in FORMATS]
    if bad:
        raise error(f"formats: unknown {bad}; allowed: {list(FORMATS)}")
    return tuple(dict.fromkeys(items))


def url_extraction(entry: Mapping[str, object], limits: SchemaLimits) -> JSONObject | None:
    """The per-URL extraction options of a URL object, checked; None when it has none.

    ValueError names the first bad key (the URL's ``reason``).
    """
    given = {key: entry[key] for key in URL_EXTRACTION_KEYS if entry.get(key) is not None}
    if not given:
        return None
    out: JSONObject = {}
    if "extraction_schema" in given and "extraction_profile" in given:
        raise ValueError("give extraction_schema or extraction_profile, not both")
    if "extraction_schema" in given:
        out["extraction_schema"] = _schema(given["extraction_schema"], limits)
    profile = given.get("extraction_profile")
    if profile is not None:
        if not isinstance(profile, str):
            raise ValueError("extraction_profile must be a string")
        if profile.strip().lower() != AUTO_PROFILE:
            out["extraction_schema"] = _schema(PROFILE_PREFIX + profile, limits)
    prompt = given.get("extraction_prompt")
    if prompt is not None:
        if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"extraction_prompt must be a string of at most {MAX_PROMPT_CHARS}"
                             " characters")
        out["extraction_prompt"] = prompt
    formats: list[JSONValue] = (
        list(check_formats(given["formats"], ValueError)) if "formats" in given else [])
    if _flag(given, "include_raw_html") and "html" not in formats:
        formats = [*(formats or ["json"]), "html"]
    if formats:
        out["formats"] = formats
    if "cache" in given:
        out["cache"] = _flag(given, "cache")
    if "cost_controls" in given:
        out["cost_controls"] = _cost_controls(given["cost_controls"])
    return out or None


def _schema(raw: object, limits: SchemaLimits) -> JSONObject:
    try:
        return parse_schema(raw, limits)
    except BatchInputError as exc:
        if isinstance(raw, str) and raw.startswith(PROFILE_PREFIX):
            raise ValueError(f"extraction_profile: one of {[AUTO_PROFILE, *profile_names()]}")\
                from None
        raise ValueError(f"extraction_schema: {exc.message}") from None


def _flag(given: Mapping[str, object], key: str) -> bool:
    value = given.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")
    return value


def _cost_controls(value: object) -> JSONObject:
    if not isinstance(value, dict) or set(value) - COST_CONTROL_KEYS:
        raise ValueError(f"cost_controls must be an object with keys {sorted(COST_CONTROL_KEYS)}")
    if not all(isinstance(v, (str, int, float, bool)) for v in value.values()):
        raise ValueError("cost_controls values must be strings, numbers or booleans")
    return dict(value)


def extraction_mode(schema: Mapping[str, object] | None, prompt: str | None) -> str:
    """``schema``, ``prompt`` (free-form JSON from the LLM) or ``content`` (no data asked)."""
    if schema is not None:
        return "schema"
    return "prompt" if prompt else "content"


def kept_formats(formats: tuple[str, ...] | list[str], mode: str) -> tuple[str, ...]:
    """The content formats an item keeps: a content-only item keeps at least its markdown."""
    kept = tuple(item for item in formats if item != "json")
    return kept or (CONTENT_DEFAULT_FORMATS if mode == "content" else ())
