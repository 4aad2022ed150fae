"""The API's shared state in one Scrapyd process, and the Scrapyd application that fronts it.

``scrapyd.conf``::

    [scrapyd]
    application = batchscraper.api.app.application

    [services]
    batches      = batchscraper.api.resources.Batches
    openapi.json = batchscraper.api.resources.OpenApi

Scrapyd builds each ``[services]`` resource with its web root; they share one
:class:`BatchApi` (settings, keys, store, jobs, webhook delivery). Scrapyd's
basic auth wraps its whole web root; :func:`application` places the API's
resources in front of it, because they authenticate with API keys instead,
and gives the site a request class that checks keys, basic auth and size
before a request's body is read (:class:`~batchscraper.api.gate.GatedRequest`).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import sys
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from pymongo.errors import PyMongoError
from scrapy.utils.misc import load_object
from scrapyd.app import application as scrapyd_application
from scrapyd.exceptions import ConfigError
from twisted.application.internet import TCPServer, UNIXServer
from twisted.application.service import IService, IServiceCollection
from twisted.python.components import Componentized
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.static import Data

from batchscraper.api.auth import ApiKeys, ScrapydAuth
from batchscraper.api.config import ApiConfig, api_settings, check_exposure
from batchscraper.api.delivery import WebhookDelivery
from batchscraper.api.gate import BodyGate, GatedRequest
from batchscraper.api.jobs import CrawlShutdown, ScrapydJobs
from batchscraper.api.nodes import RemoteJobs, parse_nodes
from batchscraper.api.reconcile import BatchReconciler, ReconcileConfig, ReconcileService
from batchscraper.api.retention import RetentionService
from batchscraper.api.service import BatchService
from batchscraper.store import store_for, utcnow
from batchscraper.store.outbox import WebhookOutbox
from batchscraper.webhooks import WebhookConfig

if TYPE_CHECKING:  # importing scrapyd.website builds resources (deprecated ones, too)
    from scrapyd.config import Config
    from scrapyd.website import Root

logger = logging.getLogger(__name__)

_APIS: weakref.WeakKeyDictionary[Componentized, BatchApi] = weakref.WeakKeyDictionary()
# a path prefix as a reverse proxy announces it: segments of URL path characters
PATH_PREFIX = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*")


class BatchApi:
    """Everything the API's resources share, built once per Scrapyd application."""

    def __init__(self, root: Root) -> None:
        _log_to_scrapyd()
        scrapyd_config = root.scheduler.config
        settings = api_settings(scrapyd_config)
        try:
            self.keys = ApiKeys.from_settings(settings)
        except ValueError as exc:
            raise ConfigError(f"batchscraper: {exc}") from None
        check_exposure(scrapyd_config, self.keys.enabled)
        self.config = ApiConfig.from_settings(settings)
        self.prefix_header = root.prefix_header.encode("latin-1")  # a str in scrapyd.conf
        self.jobs = self._jobs(root)
        self.services: dict[type, Resource] = {}
        uri = settings.get("MONGO_URI") or None
        try:  # Scrapyd is starting: the reactor does not run yet, blocking is fine
            store = store_for(uri)
            self.service = BatchService(store, self.config)
            self.service.ensure_indexes()
            outbox = WebhookOutbox(store.db, WebhookConfig.from_settings(settings))
            outbox.ensure_indexes()
        except (PyMongoError, RuntimeError) as exc:
            where = uri or "embedded server"
            raise ConfigError(f"batchscraper: cannot use MongoDB ({where}): {exc}") from None
        WebhookDelivery(outbox, self.config.webhook_policy).setServiceParent(root.app)
        CrawlShutdown(root, self.config.shutdown_grace).setServiceParent(root.app)
        sweep_interval = settings.getfloat("BATCH_RETENTION_SWEEP_INTERVAL")
        if sweep_interval > 0:  # expired batches, their screenshots, content past retention
            RetentionService(store, sweep_interval).setServiceParent(root.app)
        reconcile = ReconcileConfig.from_settings(settings)
        if reconcile.enabled:  # no batch stays pending or running without a worker
            ReconcileService(
                BatchReconciler(store), self.jobs, self.service.record_jobs, reconcile
            ).setServiceParent(root.app)
        logger.info(
            "Batch API ready: project %r, database %r, API keys %s",
            self.config.project, store.db.name, "on" if self.keys.enabled else "off (open API)",
        )

    def _jobs(self, root: Root) -> ScrapydJobs:
        """Jobs on this Scrapyd and on the other nodes of ``BATCH_API_NODES``."""
        try:
            nodes = parse_nodes(self.config.nodes)
        except ValueError as exc:
            raise ConfigError(f"batchscraper: {exc}") from None
        remote = RemoteJobs(
            [node for node in nodes if node is not None],
            self.config.project,
            self.config.node_timeout,
            self.config.node_poll_interval,
        )
        remote.setServiceParent(root.app)
        return ScrapydJobs(root, self.config.project, self.config.job_settings, nodes, remote)

    @classmethod
    def of(cls, root: Root) -> BatchApi:
        """The application's instance, created by the first API resource Scrapyd builds."""
        if root.app not in _APIS:
            _APIS[root.app] = cls(root)
        return _APIS[root.app]

    def register(self, resource: Resource) -> None:
        """Note a ``[services]`` resource, so :func:`application` can mount it up front."""
        self.services[type(resource)] = resource

    def changes_cursor(self) -> str:
        """What a client passes as ``updated_after`` to get what changes after this read.

        Earlier than now by ``BATCH_API_CHANGES_OVERLAP``: a write stamped a
        little before the read (another node's clock, a transaction still
        committing) is sent again rather than missed.
        """
        return (utcnow() - dt.timedelta(seconds=self.config.changes_overlap)).isoformat()

    def base(self, request: Request) -> str:
        """The path prefix a reverse proxy announces, for links and ``Location`` headers.

        Only a plain path is taken: ``//host`` or a URL there would send
        clients elsewhere.
        """
        prefix = (request.getHeader(self.prefix_header) or b"").decode("latin-1").rstrip("/")
        return prefix if PATH_PREFIX.fullmatch(prefix) else ""


# the dashboard's tab icon: browsers ask every site for /favicon.ico
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
           b'<rect width="16" height="16" rx="3" fill="#1f6feb"/>'
           b'<path d="M4 4h8M4 8h8M4 12h5" stroke="#fff" stroke-width="2"/></svg>')


class ApiFront(Resource):
    """Routes the API's paths to its resources; everything else to Scrapyd (and its auth)."""

    def __init__(self, scrapyd_root: Root, mounts: dict[bytes, Resource]) -> None:
        super().__init__()
        self.scrapyd_root = scrapyd_root
        self.mounts = {**mounts, b"favicon.ico": Data(FAVICON, "image/svg+xml")}

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        if path in self.mounts:
            return self.mounts[path]
        return self.scrapyd_root.getChildWithDefault(path, request)

    def render(self, request: Request) -> bytes | int:
        return self.scrapyd_root.render(request)


def application(config: Config) -> Componentized:
    """Scrapyd's application, with the batch API's ``[services]`` served before its basic auth."""
    app = scrapyd_application(config)
    api = _APIS.get(app)
    if api is None:
        return app
    mounts = {}
    for name, path in config.items("services", default=[]):
        resource = api.services.get(load_object(path)) if path else None
        if resource is not None:
            mounts[name.encode()] = resource
    gate = BodyGate(
        keys=api.keys,
        scrapyd_auth=ScrapydAuth.from_config(config),
        max_body_bytes=api.config.max_body_bytes,
        linger_seconds=api.config.linger_seconds,
        api_paths=frozenset(mounts),
        keyed_paths=frozenset(k for k, r in mounts.items() if getattr(r, "key_required", False)),
    )
    for service in cast("Iterable[IService]", IServiceCollection(app)):
        if isinstance(service, TCPServer | UNIXServer):
            site = service.args[1]
            site.resource = ApiFront(site.resource, mounts)
            site.requestFactory = functools.partial(GatedRequest, gate=gate)
    return app


def _log_to_scrapyd() -> None:
    """Send this package's log records to Scrapyd's log (twistd captures stderr)."""
    package = logging.getLogger("batchscraper")
    if not package.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(name)s] %(levelname)s: %(message)s"))
        package.addHandler(handler)
        package.setLevel(logging.INFO)
