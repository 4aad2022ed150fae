"""The ``/templates`` endpoints: the caller's learned templates (list, read, delete).

``scrapyd.conf``::

    [services]
    templates = batchscraper.api.templates.Templates

Templates are learned by the crawls (:mod:`batchscraper.templates`); the API only reads
them and deletes them, through :class:`~batchscraper.templates.service.TemplateService`.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from twisted.internet.threads import deferToThread

from batchscraper.api.app import BatchApi
from batchscraper.api.http import ApiResource, JsonResponse, query_choice, query_int, query_text
from batchscraper.api.views import pagination
from batchscraper.templates.service import TemplateFilter, TemplateService
from batchscraper.templates.store import STATUSES, TemplateDocument, TemplateStore

if TYPE_CHECKING:
    from scrapyd.website import Root
    from twisted.web.resource import Resource
    from twisted.web.server import Request

#: a host as templates are keyed by it (name and port), and a batch id, at most
MAX_HOST = 261
MAX_BATCH_ID = 100

_TEMPLATES: weakref.WeakKeyDictionary[BatchApi, TemplateService] = weakref.WeakKeyDictionary()


def template_service(api: BatchApi) -> TemplateService:
    """The application's template service, built once (its indexes made then)."""
    if api not in _TEMPLATES:
        store = TemplateStore(api.service.store.db)
        store.ensure_indexes()  # Scrapyd is starting: blocking is fine
        _TEMPLATES[api] = TemplateService(store, api.service)
    return _TEMPLATES[api]


class Templates(ApiResource):
    """``/templates``: the caller's templates (GET); ``/templates/{id}`` below it."""

    def __init__(self, root: Root) -> None:
        super().__init__(BatchApi.of(root))
        self.api.register(self)
        self.templates = template_service(self.api)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return self
        return TemplateResource(self.api, self.templates, path.decode("utf-8", "replace"))

    async def handle_GET(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        config = self.api.config
        page = query_int(request, "page", 1, 1, 10**9)
        limit = query_int(request, "limit", config.page_size, 1, config.max_batches_limit)
        batch_id = query_text(request, "batch_id", MAX_BATCH_ID)
        found = TemplateFilter(host=query_text(request, "host", MAX_HOST).lower() or None,
                               status=query_choice(request, "status", STATUSES),
                               batch_id=batch_id or None)
        docs, total = await deferToThread(self.templates.page, caller, found, page, limit)
        base = self.base(request)
        return JsonResponse({
            "templates": [template_summary(doc, base) for doc in docs],
            "pagination": pagination(page, limit, total),
        })


class TemplateResource(ApiResource):
    """``/templates/{id}``: read (GET: rules and samples too), delete (DELETE)."""

    def __init__(self, api: BatchApi, templates: TemplateService, template_id: str) -> None:
        super().__init__(api)
        self.templates = templates
        self.template_id = template_id

    async def handle_GET(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        doc = await deferToThread(self.templates.get, caller, self.template_id)
        return JsonResponse(template_detail(doc, self.base(request)))

    async def handle_DELETE(self, request: Request) -> JsonResponse:
        caller = self.caller(request)
        doc = await deferToThread(self.templates.delete, caller, self.template_id)
        return JsonResponse({"template_id": doc["_id"], "deleted": True})


# -- views -------------------------------------------------------------------------------


def template_summary(doc: TemplateDocument, base: str = "") -> dict[str, object]:
    """A template in lists: its key, status, the fields it extracts, how it has done."""
    hits, misses = doc.get("hits", 0), doc.get("misses", 0)
    audits, disagreements = doc.get("audits", 0), doc.get("disagreements", 0)
    return {
        "template_id": doc["_id"],
        "host": doc["host"],
        "schema_fp": doc["schema_fp"],
        "version": doc.get("version", 1),
        "status": doc["status"],
        "reason": doc.get("reason"),
        "fields": sorted(doc.get("rules") or {}),
        "samples_kept": len(doc.get("samples") or []),
        "attempts": doc.get("attempts", 0),
        "hits": hits,
        "misses": misses,
        "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
        "audits": audits,
        "disagreements": disagreements,
        "accuracy": round(1 - disagreements / audits, 4) if audits else None,
        "batch_id": doc.get("batch_id"),
        "created_at": doc["created_at"],
        "updated_at": doc.get("updated_at"),
        "activated_at": doc.get("activated_at"),
        "retired_at": doc.get("retired_at"),
        "links": {"self": f"{base}/templates/{doc['_id']}"},
    }


def template_detail(doc: TemplateDocument, base: str = "") -> dict[str, object]:
    """A template with its selectors (``rules``), its samples' URLs and LLM answers, and its
    recent misses and audits (what retires it)."""
    recent = doc.get("window") or []  # 1 for each bad outcome
    samples = doc.get("samples") or []
    return {
        **template_summary(doc, base),
        "rules": doc.get("rules") or {},
        "samples": [{"url": s.get("url"), "answer": s.get("answer")}
                    for s in samples],
        "recent": {"outcomes": len(recent), "bad": sum(recent)},
    }
