"""The API's settings in the Scrapyd process, and the check that it is not exposed unprotected."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from scrapy.settings import Settings
from scrapyd.exceptions import ConfigError

from batchscraper.api.auth import ScrapydAuth
from batchscraper.downloadermiddlewares.ssrf import AddressPolicy, guard_policy
from batchscraper.inputs import Limits

if TYPE_CHECKING:
    from scrapyd.config import Config

SETTINGS_MODULE = "batchscraper.settings"
OVERRIDES_SECTION = "batchscraper"
APPLICATION = "batchscraper.api.app.application"


def api_settings(scrapyd_config: Config) -> Settings:
    """The project's settings, overridden by scrapyd.conf's ``[batchscraper]`` section.

    Read from the settings module itself (not from ``scrapy.cfg``), so the API
    works wherever Scrapyd runs, including with projects deployed as eggs.
    """
    settings = Settings()
    settings.setmodule(os.environ.get("SCRAPY_SETTINGS_MODULE", SETTINGS_MODULE), "project")
    for name, value in scrapyd_config.items(OVERRIDES_SECTION, default=[]):
        settings.set(name.upper(), value, "cmdline")
    return settings


@dataclass(frozen=True)
class ApiConfig:
    """The ``BATCH_API_*`` settings, read once when Scrapyd starts."""

    project: str
    job_settings: dict[str, str]
    max_body_bytes: int
    linger_seconds: float  # after refusing a body: how long the rest is read and dropped
    page_size: int
    max_batches_limit: int
    max_items_limit: int
    stream_chunk: int
    changes_overlap: float  # seconds an `as_of` cursor reaches back
    idempotency_ttl: int
    limits: Limits
    nodes: list[str]
    node_timeout: float
    node_poll_interval: float
    shutdown_grace: float  # seconds Scrapyd's shutdown waits for its crawls, then kills them
    # webhook targets pass the crawl's SSRF guard (BATCH_ALLOWED_NETWORKS / _PORTS)
    webhook_policy: AddressPolicy = field(default_factory=AddressPolicy)
    sync_max_urls: int = 50  # POST /batches?wait=...: the most URLs answered synchronously
    sync_max_wait: int = 60  # ...and the longest wait, in seconds
    sync_poll_interval: float = 0.25  # how often a waiting submit reads the batch's status

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiConfig:
        return cls(
            project=settings.get("BATCH_API_PROJECT"),
            job_settings={k: str(v) for k, v in settings.getdict("BATCH_API_JOB_SETTINGS").items()},
            max_body_bytes=settings.getint("BATCH_API_MAX_BODY_BYTES"),
            linger_seconds=settings.getfloat("BATCH_API_LINGER_SECONDS"),
            page_size=settings.getint("BATCH_API_PAGE_SIZE"),
            max_batches_limit=settings.getint("BATCH_API_MAX_BATCHES_LIMIT"),
            max_items_limit=settings.getint("BATCH_API_MAX_ITEMS_LIMIT"),
            stream_chunk=settings.getint("BATCH_API_STREAM_CHUNK"),
            changes_overlap=settings.getfloat("BATCH_API_CHANGES_OVERLAP"),
            idempotency_ttl=settings.getint("BATCH_API_IDEMPOTENCY_TTL"),
            limits=Limits.from_settings(crawl_settings(settings)),
            nodes=node_list(settings.get("BATCH_API_NODES")),
            node_timeout=settings.getfloat("BATCH_API_NODE_TIMEOUT"),
            node_poll_interval=settings.getfloat("BATCH_API_NODE_POLL_INTERVAL"),
            shutdown_grace=settings.getfloat("BATCH_API_SHUTDOWN_GRACE_SECONDS"),
            webhook_policy=guard_policy(settings),
            sync_max_urls=settings.getint("BATCH_SYNC_MAX_URLS"),
            sync_max_wait=settings.getint("BATCH_SYNC_MAX_WAIT"),
            sync_poll_interval=settings.getfloat("BATCH_SYNC_POLL_INTERVAL"),
        )


def crawl_settings(settings: Settings) -> Settings:
    """The settings the API's crawls run with: the API's, plus ``BATCH_API_JOB_SETTINGS``
    (what submit checks depend on, such as whether an LLM endpoint is configured)."""
    crawl = settings.copy()
    crawl.setdict(crawl.getdict("BATCH_API_JOB_SETTINGS"), "cmdline")
    return crawl


def node_list(value: object) -> list[str]:
    """``BATCH_API_NODES`` from settings.py (a list) or scrapyd.conf (JSON, or commas)."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else text.split(",")
    entries = cast("Iterable[object]", value or [])  # a list, as settings.py gives it
    return [str(entry).strip() for entry in entries if str(entry).strip()]


def check_exposure(scrapyd_config: Config, keys_configured: bool) -> None:
    """Refuse to start an unprotected API on a public address, or behind the wrong auth.

    Without API keys anyone who reaches the port can submit crawls, so Scrapyd
    must listen on loopback only. With keys, Scrapyd's own endpoints (which
    accept eggs: code) need its basic auth, and the API must be mounted in
    front of that basic auth by this package's application.
    """
    bind = os.getenv("SCRAPYD_BIND_ADDRESS") or scrapyd_config.get("bind_address", "127.0.0.1")
    port = os.getenv("SCRAPYD_HTTP_PORT") or scrapyd_config.get("http_port", "6800")
    basic_auth = ScrapydAuth.from_config(scrapyd_config).enabled
    if not keys_configured and bind and port and not is_loopback(bind):
        raise ConfigError(
            f"batchscraper: refusing to serve the batch API on {bind} without API keys. "
            "Set BATCH_API_KEYS (key:owner,...) and Scrapyd's username/password "
            "(SCRAPYD_USERNAME/SCRAPYD_PASSWORD), or bind to 127.0.0.1."
        )
    if keys_configured and not basic_auth:
        raise ConfigError(
            "batchscraper: BATCH_API_KEYS is set but Scrapyd's basic auth is not; set "
            "SCRAPYD_USERNAME and SCRAPYD_PASSWORD (or username/password in scrapyd.conf) "
            "so schedule.json, addversion.json and the other Scrapyd endpoints are protected."
        )
    if basic_auth and scrapyd_config.get("application", "") != APPLICATION:
        raise ConfigError(
            f"batchscraper: with Scrapyd's basic auth on, set `application = {APPLICATION}` "
            "in scrapyd.conf so the batch API answers to API keys instead of basic auth."
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is only reachable from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
