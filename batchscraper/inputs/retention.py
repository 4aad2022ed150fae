"""How long a batch is kept: ``expires_in``, ``content_retention_days``, ``store_content``.

``expires_in`` is seconds (an integer) or a duration such as ``"7d"``, ``"12h"``,
``"30m"``, ``"90s"``; it is stored as seconds. Without it a batch gets the
deployment's ``BATCH_RETENTION_DAYS`` (0: kept until deleted). ``store_content:
false`` keeps records only: no page content (``formats`` beyond ``json``, per-URL
``formats`` or ``include_raw_html``) and no screenshots may be asked for.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from batchscraper.exceptions import InvalidOptionError

if TYPE_CHECKING:
    from batchscraper.inputs import UrlSpec

SECONDS_PER = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
DURATION = re.compile(r"(\d{1,9})\s*([smhd])")
MIN_EXPIRES_IN = 60
MAX_EXPIRES_IN = 3650 * SECONDS_PER["d"]
MAX_CONTENT_RETENTION_DAYS = 3650


def expires_in_seconds(value: object) -> int:
    """``expires_in`` as seconds: an integer, or digits with a unit (s, m, h, d)."""
    if isinstance(value, str) and not value.strip().isdigit():
        match = DURATION.fullmatch(value.strip().lower())
        if match is None:
            raise InvalidOptionError(
                'expires_in: seconds, or a duration such as "7d", "12h", "30m"')
        seconds = int(match.group(1)) * SECONDS_PER[match.group(2)]
    elif isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidOptionError("expires_in: must be seconds (an integer) or a duration")
    else:
        seconds = int(value)
    if not MIN_EXPIRES_IN <= seconds <= MAX_EXPIRES_IN:
        raise InvalidOptionError(
            f"expires_in: must be between {MIN_EXPIRES_IN} seconds and "
            f"{MAX_EXPIRES_IN // SECONDS_PER['d']} days, got {value!r}")
    return seconds


def content_kept_problems(
    store_content: bool, formats: tuple[str, ...], urls: list[UrlSpec]
) -> list[dict[str, str]]:
    """With ``store_content: false``, what still asks for page content to be kept."""
    if store_content:
        return []
    problems = []
    if set(formats) - {"json"}:
        problems.append({"option": "formats", "message": "formats: store_content false keeps "
                         "no page content; give only json"})
    asking = [index for index, url in enumerate(urls) if _asks_for_content(url)]
    if asking:
        problems.append({"option": "store_content", "message": f"store_content: false, but the "
                         f"URLs at indexes {asking[:20]} ask for content or screenshots"})
    return problems


def _asks_for_content(url: UrlSpec) -> bool:
    """Whether a URL's own formats name more than json, or it asks for a screenshot."""
    formats = (url.extraction or {}).get("formats") or []
    return bool(set(formats if isinstance(formats, list) else []) - {"json"}) or bool(
        (url.browser or {}).get("screenshot"))
