"""Proxy URLs: parsing, the redacted form stored and shown, and where credentials are kept.

A proxy given by a user (option ``proxy``, batch-wide or per URL) may carry
credentials. They never reach a log, an item record, the batch document or
the API: those hold the redacted form (``http://***:***@host:port``), and the
full URLs are kept in the ``proxy_secrets`` collection (one document per
batch, never served), from which the spider reads them.

Schemes: ``http://`` and ``https://`` (TLS to the proxy), ``socks5://`` (the
target's address, as checked here, is sent to the proxy) and ``socks5h://``
(the target's name is sent; the proxy resolves it). Which path speaks to which
proxy is :func:`via_egress_guard`'s answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict, cast
from urllib.parse import quote, unquote, urlsplit

PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
SOCKS_SCHEMES = ("socks5", "socks5h")
UNSUPPORTED_SCHEMES = {
    "socks4": "SOCKS4 has no login and no IPv6: use socks5:// or socks5h://",
    "socks4a": "SOCKS4a has no login and no IPv6: use socks5h://",
    "socks": "say which SOCKS: socks5:// (address sent) or socks5h:// (name sent)",
}
SOCKS_FIELD_BYTES = 255  # RFC 1929: a SOCKS5 username or password is 1-255 bytes
REDACTED = "***"
MAX_PROXIES = 100
SECRETS = "proxy_secrets"


@dataclass(frozen=True)
class ProxyEndpoint:
    """One proxy: where it is and, kept out of ``repr``, how to log in to it."""

    scheme: str
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL with its credentials, for Scrapy's HttpProxyMiddleware only."""
        if self.username is None:
            return self.address
        user = quote(self.username, safe="")
        password = "" if self.password is None else ":" + quote(self.password, safe="")
        return self.address.replace("://", f"://{user}{password}@", 1)

    @property
    def redacted(self) -> str:
        """What may be stored, logged and shown: credentials replaced by ``***``."""
        if self.username is None:
            return self.address
        return self.address.replace("://", f"://{REDACTED}:{REDACTED}@", 1)

    @property
    def has_credentials(self) -> bool:
        return self.username is not None

    @property
    def is_socks(self) -> bool:
        return self.scheme in SOCKS_SCHEMES


def via_egress_guard(proxy: ProxyEndpoint) -> bool:
    """Whether an HTTP fetch through ``proxy`` goes through the crawl's egress guard.

    Scrapy's ``HttpProxyMiddleware`` speaks to ``http://`` proxies itself; it
    speaks no SOCKS, and no TLS to a proxy for an ``https`` target, so those
    fetches go to the egress guard, which chains to the proxy (as every
    browser connection through a proxy does).
    """
    return proxy.scheme != "http"


def parse_proxy(text: object) -> ProxyEndpoint:
    """A proxy URL (``http``, ``https``, ``socks5`` or ``socks5h``, optionally
    ``user:password@``); ValueError saying what is wrong (never repeating the credentials)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a proxy must be a URL string")
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ValueError("a proxy URL is malformed") from None
    scheme = parts.scheme.lower()
    where = f"{scheme}://{parts.hostname}" if parts.hostname else "a proxy URL"
    if scheme in UNSUPPORTED_SCHEMES:
        raise ValueError(f"{where}: {UNSUPPORTED_SCHEMES[scheme]}")
    if scheme not in PROXY_SCHEMES:
        raise ValueError(f"{where}: scheme must be one of {list(PROXY_SCHEMES)}")
    if not parts.hostname:
        raise ValueError("a proxy URL has no host")
    if port is None or port == 0:
        raise ValueError(f"{where}: give the proxy's port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{where}: a proxy URL has no path, query or fragment")
    username = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    if REDACTED in (username, password):
        raise ValueError(f"{where}: its credentials are redacted ({REDACTED}); give them again")
    if scheme in SOCKS_SCHEMES and username is not None:
        _check_socks_login(where, username, password)
    return ProxyEndpoint(scheme, parts.hostname, port, username, password)


def _check_socks_login(where: str, username: str, password: str | None) -> None:
    """RFC 1929 sends each of the username and the password as 1 to 255 bytes."""
    for name, value in (("username", username), ("password", password)):
        size = len((value or "").encode())
        if not 1 <= size <= SOCKS_FIELD_BYTES:
            raise ValueError(f"{where}: a SOCKS5 {name} must be 1 to {SOCKS_FIELD_BYTES} bytes"
                             f" (this one is {size})")


def parse_proxies(value: object) -> tuple[ProxyEndpoint, ...]:
    """One proxy URL or a list of them (duplicates dropped); ValueError when one is bad."""
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not entries:
        raise ValueError("must be a proxy URL or a list of them")
    if len(entries) > MAX_PROXIES:
        raise ValueError(f"{len(entries)} proxies; the limit is {MAX_PROXIES}")
    problems = []
    proxies: list[ProxyEndpoint] = []
    for index, entry in enumerate(entries):
        try:
            proxies.append(parse_proxy(entry))
        except ValueError as exc:
            problems.append(f"[{index}] {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(dict.fromkeys(proxies))


def redacted(proxies: tuple[ProxyEndpoint, ...]) -> list[str]:
    return [proxy.redacted for proxy in proxies]


def secrets_document(
    batch_id: str,
    owner: str | None,
    batch_proxies: tuple[ProxyEndpoint, ...],
    url_proxies: dict[int, tuple[ProxyEndpoint, ...]],
) -> ProxySecrets | None:
    """The ``proxy_secrets`` document of a batch, or None when no proxy has credentials."""
    with_credentials = [
        proxy for proxies in (batch_proxies, *url_proxies.values()) for proxy in proxies
    ]
    if not any(proxy.has_credentials for proxy in with_credentials):
        return None
    return {
        "_id": batch_id,
        "owner": owner,
        "batch": [proxy.url for proxy in batch_proxies],
        "urls": {str(index): [proxy.url for proxy in proxies]
                 for index, proxies in url_proxies.items()},
    }


class ProxySecrets(TypedDict):
    """A batch's proxy URLs with their credentials (``proxy_secrets``, kept apart from the
    batch, whose options hold them redacted): batch-wide, and per URL by input index."""

    _id: str
    owner: str | None
    batch: list[str]
    urls: dict[str, list[str]]


@dataclass(frozen=True)
class ProxySource:
    """A stored batch's proxies with their credentials (from its ``proxy_secrets`` document):
    batch-wide, or an item's own."""

    batch: tuple[ProxyEndpoint, ...] = ()
    urls: dict[str, list[str]] = field(default_factory=dict)  # an item's own, by index

    @classmethod
    def load(cls, stored: list[str] | None, secrets: Mapping[str, object] | None
             ) -> ProxySource:
        """``stored``: the batch's redacted ``options.proxy``; ``secrets``: the batch's
        ``proxy_secrets`` document (:class:`ProxySecrets`), if it has one."""
        held = cast(ProxySecrets, secrets or {})
        urls = held.get("batch") or stored or []
        return cls(batch=tuple(_stored(url) for url in urls), urls=held.get("urls") or {})

    def for_item(self, index: int, stored: list[str] | None) -> tuple[ProxyEndpoint, ...]:
        """The proxies of item ``index`` (``stored``: its redacted per-URL ``proxy``)."""
        if not stored:
            return self.batch
        urls = self.urls.get(str(index)) or stored
        return tuple(_stored(url) for url in urls)


def _stored(url: str) -> ProxyEndpoint:
    """A proxy URL read back from the store (checked when it was submitted)."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return ProxyEndpoint(
        parts.scheme, parts.hostname, parts.port,
        None if parts.username is None else unquote(parts.username),
        None if parts.password is None else unquote(parts.password),
    )
