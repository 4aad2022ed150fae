"""The fetch cache (option ``max_age``): Scrapy's HttpCacheMiddleware, a max-age policy, and
a MongoDB/GridFS storage scoped to the batch's owner.

- :class:`MaxAgePolicy` (an ``RFC2616Policy``): a page the owner fetched less than
  ``max_age`` seconds ago is fresh (served, no request: ``cache: "hit"``); an older one is
  revalidated with its ``ETag`` / ``Last-Modified`` (``If-None-Match`` /
  ``If-Modified-Since``), and a 304 serves it again (``cache: "revalidated"``). Only 200
  answers without ``Cache-Control: no-store`` from the HTTP path are stored.
- :class:`MongoCacheStorage`: ``page_cache`` documents (owner, URL fingerprint, fetched
  time, status, headers, the address it came from) with the body in the GridFS bucket
  ``page_cache``; bodies over ``BATCH_CACHE_MAX_BYTES`` are not stored; entries expire after
  ``BATCH_CACHE_TTL_DAYS`` (TTL index; their GridFS files are swept when a crawl opens).
- :class:`PageCacheMiddleware`: Scrapy's middleware, reading the entry off the reactor
  thread; writes go to one background thread.

The SSRF guard (priority 50) checks every request before the cache (900) is asked, and the
address a cached page came from is checked again like a fetched one's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import NotRequired, TypedDict, cast

from bson import ObjectId
from gridfs import GridFSBucket
from gridfs.errors import NoFile
from pymongo import ASCENDING
from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.httpcache import HttpCacheMiddleware
from scrapy.exceptions import NotConfigured
from scrapy.extensions.httpcache import RFC2616Policy
from scrapy.http import Headers, Response
from scrapy.responsetypes import responsetypes
from scrapy.settings import BaseSettings
from scrapy.utils.request import fingerprint

from batchscraper.run import batch_run

logger = logging.getLogger(__name__)

COLLECTION = "page_cache"
SWEEP_LIMIT = 1_000  # expired GridFS files removed per crawl start
_UNREAD = object()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)



class CacheEntry(TypedDict):
    """One cached response (``page_cache``); its body is a GridFS file."""

    _id: str  # key(): owner and request fingerprint
    owner: str | None
    url: str
    status: int
    headers: dict[str, list[str]]
    fetched_at: dt.datetime
    expires_at: dt.datetime
    ip_address: str | None
    body_id: NotRequired[ObjectId]
    body: NotRequired[bytes]  # read back by load(), never stored in the entry

class MaxAgePolicy(RFC2616Policy):
    """Fresh while younger than the request's ``max_age``; then revalidated by validators."""

    def should_cache_request(self, request: Request) -> bool:
        if request.meta.get("playwright") or not request.meta.get("max_age"):
            return False
        return super().should_cache_request(request)

    def should_cache_response(self, response: Response, request: Request) -> bool:
        return response.status == 200 and b"no-store" not in self._parse_cachecontrol(response)

    def is_cached_response_fresh(self, cachedresponse: Response, request: Request) -> bool:
        fetched_at: dt.datetime = request.meta["page_cache_fetched_at"]
        if (utcnow() - fetched_at).total_seconds() < request.meta["max_age"]:
            request.meta["cache"] = "hit"
            return True
        self._set_conditional_validators(request, cachedresponse)
        return False

    def is_cached_response_valid(
        self, cachedresponse: Response, response: Response, request: Request
    ) -> bool:
        if response.status == 304:
            request.meta["cache"] = "revalidated"
            return True
        return False


class MongoCacheStorage:
    """Scrapy cache storage on MongoDB (metadata) and GridFS (bodies), scoped to an owner."""

    def __init__(self, settings: BaseSettings) -> None:
        self.max_bytes = settings.getint("BATCH_CACHE_MAX_BYTES")
        self.ttl = dt.timedelta(days=settings.getfloat("BATCH_CACHE_TTL_DAYS"))
        self.owner: str | None = None
        self.writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="page-cache")

    def open_spider(self, spider: Spider) -> None:
        run = batch_run(spider.crawler)
        store, self.owner = run.store, run.batch.get("owner")
        self.entries = store.db[COLLECTION]
        self.bodies = GridFSBucket(store.db, bucket_name=COLLECTION)
        self.entries.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0)
        self.writes.submit(self._sweep)

    def close_spider(self, spider: Spider) -> None:
        self.writes.shutdown(wait=True)

    def key(self, request: Request) -> str:
        """One entry per owner and request fingerprint (method, URL, body)."""
        text = f"{self.owner or ''}\0{fingerprint(request).hex()}"
        return hashlib.sha256(text.encode()).hexdigest()

    def load(self, request: Request) -> CacheEntry | None:
        """The request's unexpired entry with its body (blocking)."""
        entry = cast("CacheEntry | None", self.entries.find_one({"_id": self.key(request)}))
        if entry is None or _aware(entry["expires_at"]) <= utcnow():
            return None
        try:
            with self.bodies.open_download_stream(entry["body_id"]) as stream:
                entry["body"] = stream.read()
        except NoFile:
            return None
        return entry

    def retrieve_response(self, spider: Spider, request: Request) -> Response | None:
        entry = request.meta.pop("_page_cache_entry", _UNREAD)
        if entry is _UNREAD:
            entry = self.load(request)
        if entry is None:
            return None
        entry = cast(CacheEntry, entry)  # load()'s, read by process_request or here
        request.meta["page_cache_fetched_at"] = _aware(entry["fetched_at"])
        headers = Headers(entry["headers"])
        cls = responsetypes.from_args(headers=headers, url=entry["url"], body=entry["body"])
        address = entry.get("ip_address")
        ip = ipaddress.ip_address(address) if address else None
        return cls(url=entry["url"], status=entry["status"], headers=headers,
                   body=entry["body"], ip_address=ip)

    def store_response(self, spider: Spider, request: Request, response: Response) -> None:
        if len(response.body) > self.max_bytes:
            return
        key, now = self.key(request), utcnow()
        if "cached" in response.flags:  # revalidated by a 304: the stored body still holds
            update = {"fetched_at": now, "expires_at": now + self.ttl,
                      "headers": _headers(response)}
            self.writes.submit(self.entries.update_one, {"_id": key}, {"$set": update})
            return
        entry: CacheEntry = {
            "_id": key, "owner": self.owner, "url": response.url, "status": response.status,
            "headers": _headers(response), "fetched_at": now, "expires_at": now + self.ttl,
            "ip_address": str(response.ip_address) if response.ip_address else None,
        }
        self.writes.submit(self._write, entry, response.body)

    def _write(self, entry: CacheEntry, body: bytes) -> None:
        try:
            entry["body_id"] = self.bodies.upload_from_stream(
                entry["_id"], body, metadata={"expires_at": entry["expires_at"]}
            )
            old = self.entries.find_one_and_replace({"_id": entry["_id"]}, entry, upsert=True)
            if old is not None:
                self.bodies.delete(old["body_id"])
        except Exception:  # a cache write must never fail the crawl
            logger.warning("Could not store %s in the page cache", entry["url"], exc_info=True)

    def _sweep(self) -> None:
        """GridFS files of expired entries (the TTL index removes only the entries)."""
        files = self.entries.database[f"{COLLECTION}.files"]
        expired = files.find({"metadata.expires_at": {"$lte": utcnow()}}, {"_id": 1})
        for file in expired.limit(SWEEP_LIMIT):
            with contextlib.suppress(NoFile):
                self.bodies.delete(file["_id"])


class PageCacheMiddleware(HttpCacheMiddleware):
    """Scrapy's HttpCacheMiddleware with the entry read off the reactor thread."""

    storage: MongoCacheStorage

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PageCacheMiddleware:
        if not crawler.settings.getbool("BATCH_CACHE_ENABLED"):
            raise NotConfigured
        return super().from_crawler(crawler)

    async def process_request(  # type: ignore[override]
        self, request: Request
    ) -> Request | Response | None:
        if not request.meta.get("dont_cache") and self.policy.should_cache_request(request):
            request.meta["_page_cache_entry"] = await asyncio.to_thread(
                self.storage.load, request
            )
        return super().process_request(request)


def _headers(response: Response) -> dict[str, list[str]]:
    return {key.decode("latin-1"): [v.decode("latin-1") for v in values]
            for key, values in response.headers.items()}


def _aware(value: dt.datetime) -> dt.datetime:
    """MongoDB gives naive UTC datetimes back."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
