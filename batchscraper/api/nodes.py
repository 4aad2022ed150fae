"""Other Scrapyd nodes that run a batch's jobs (``BATCH_API_NODES``), over their JSON API.

Every node shares the API's MongoDB; the jobs of one batch share its items
through leases, so a job may run anywhere. The API schedules onto a remote
node with ``schedule.json`` (the same ``-s`` settings as local jobs), stops
jobs there with ``cancel.json``, and polls ``listjobs.json`` to tell which
jobs are still active and which nodes answer. All calls are asynchronous
(Twisted ``Agent``), on the reactor thread.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from io import BytesIO
from typing import TypedDict, cast
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from twisted.internet import defer, reactor
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer

from batchscraper.api.periodic import PeriodicService
from batchscraper.jsontypes import JSONObject

logger = logging.getLogger(__name__)

LOCAL = "local"  # in BATCH_API_NODES: this Scrapyd process, through its own scheduler
USER_AGENT = b"batchscraper-api/1"


@dataclass(frozen=True)
class ScrapydNode:
    """A remote Scrapyd: its base URL (no credentials) and its basic-auth header, if any."""

    url: str
    authorization: bytes | None = None

    @classmethod
    def parse(cls, text: str) -> ScrapydNode:
        """``http://user:password@host:6800`` -> the node; ValueError when it is not a URL."""
        parts = urlsplit(text.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"BATCH_API_NODES: {text!r} is neither {LOCAL!r} nor an http(s) URL")
        authorization = None
        if parts.username is not None:
            pair = f"{parts.username}:{parts.password or ''}".encode()
            authorization = b"Basic " + base64.b64encode(pair)
        netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        return cls(urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")),
                   authorization)


def parse_nodes(entries: list[str]) -> list[ScrapydNode | None]:
    """``BATCH_API_NODES`` as nodes; None stands for this Scrapyd. Empty: this Scrapyd only."""
    nodes: list[ScrapydNode | None] = []
    for entry in entries:
        if entry.strip():
            nodes.append(None if entry.strip().lower() == LOCAL else ScrapydNode.parse(entry))
    return nodes or [None]


class ListedJob(TypedDict):
    """A job in a node's ``listjobs.json`` (only its id is read)."""

    id: str


class JobListing(TypedDict, total=False):
    """A node's ``listjobs.json`` answer: its jobs by state (only these are read)."""

    pending: list[ListedJob]
    running: list[ListedJob]


class RemoteJobs(PeriodicService):
    """Schedules, cancels and tracks the ``batch`` jobs of one project on remote nodes."""

    name = "batchscraper-nodes"
    what = "Scrapyd node poll"

    def __init__(
        self, nodes: list[ScrapydNode], project: str, timeout: float, poll_interval: float
    ) -> None:
        super().__init__(poll_interval)
        self.nodes = nodes
        self.project = project
        self.timeout = timeout
        self.agent = Agent(reactor)
        self.active: dict[str, set[str]] = {node.url: set() for node in nodes}
        self.answering: dict[str, bool] = {node.url: True for node in nodes}

    def startService(self) -> None:
        if self.nodes:  # else nothing to poll
            super().startService()

    def active_jobs(self) -> set[str]:
        """Job ids queued or running on any remote node, as of the last poll."""
        return set().union(*self.active.values()) if self.active else set()

    async def schedule(
        self, node: ScrapydNode, spider: str, job_id: str, settings: dict[str, str], **args: str
    ) -> None:
        """``schedule.json`` on ``node``; raises when the node refuses or does not answer."""
        form = [("project", self.project), ("spider", spider), ("jobid", job_id)]
        form += [("setting", f"{name}={value}") for name, value in settings.items()]
        form += sorted(args.items())
        await self._call(node, b"POST", "schedule.json", urlencode(form).encode())
        self.active[node.url].add(job_id)

    async def cancel(self, node: ScrapydNode, job_id: str) -> None:
        """``cancel.json`` on ``node`` (a job the node does not know is no error)."""
        body = urlencode({"project": self.project, "job": job_id}).encode()
        await self._call(node, b"POST", "cancel.json", body)

    async def scan(self) -> None:
        """Refresh which jobs are active on each node and which nodes answer."""
        await defer.DeferredList([defer.ensureDeferred(self._poll_node(node))
                                  for node in self.nodes])

    async def _poll_node(self, node: ScrapydNode) -> None:
        try:
            jobs = await self._call(node, b"GET", f"listjobs.json?project={quote(self.project)}")
        except Exception as exc:  # a node that does not answer is only noted
            if self.answering[node.url]:
                logger.warning("Scrapyd node %s does not answer: %s", node.url, exc)
            self.answering[node.url] = False
            return
        if not self.answering[node.url]:
            logger.info("Scrapyd node %s answers again", node.url)
        self.answering[node.url] = True
        listing = cast(JobListing, jobs)
        self.active[node.url] = {
            job["id"] for job in [*listing.get("pending", []), *listing.get("running", [])]
        }

    async def _call(
        self, node: ScrapydNode, method: bytes, path: str, body: bytes | None = None
    ) -> JSONObject:
        headers = Headers({b"user-agent": [USER_AGENT]})
        if node.authorization:
            headers.setRawHeaders(b"authorization", [node.authorization])
        producer = None
        if body is not None:
            headers.setRawHeaders(b"content-type", [b"application/x-www-form-urlencoded"])
            producer = cast(IBodyProducer, FileBodyProducer(BytesIO(body)))
        url = f"{node.url}/{path}".encode()
        exchange = defer.ensureDeferred(self._exchange(method, url, headers, producer))
        code, raw = await exchange.addTimeout(self.timeout, reactor)
        answer = json.loads(raw) if raw.strip().startswith(b"{") else {}
        if code != 200 or answer.get("status") != "ok":
            message = answer.get("message") or raw[:200].decode("utf-8", "replace")
            raise RuntimeError(f"{node.url}/{path.split('?')[0]}: HTTP {code}: {message}")
        return cast(JSONObject, answer)

    async def _exchange(
        self, method: bytes, url: bytes, headers: Headers, producer: IBodyProducer | None
    ) -> tuple[int, bytes]:
        response = await self.agent.request(method, url, headers, producer)
        return response.code, await readBody(response)
