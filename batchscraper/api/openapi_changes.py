"""The OpenAPI parts of change detection (the item ``change``, the batch's ``changes`` counts,
``compare_to`` / ``ignore_fields`` on submit, ``GET /batches/{batch_id}/changes``) and of event
webhooks (``webhook.events`` / ``webhook.metadata``, the events' payloads)."""

from __future__ import annotations

from typing import Any

from batchscraper.changes import CHANGE_STATUSES
from batchscraper.events import EVENT_TYPES, MAX_METADATA_BYTES

SUBMIT_PROPERTIES = {
    "compare_to": {"type": "string", "pattern": "^b_[0-9a-f]{32}$",
                   "description": "a batch of the same schema: each item gets a change against "
                                  "its URL's record there (a schedule's run: its previous run)"},
    "ignore_fields": {"type": "array", "maxItems": 100, "items": {"type": "string"},
                      "description": "schema field paths (a or a.b) left out of the comparison"},
}
WEBHOOK_PROPERTIES = {
    "events": {"type": "array", "minItems": 1, "items": {"enum": list(EVENT_TYPES)},
               "description": "default: batch.completed only"},
    "metadata": {"type": "object", "description": f"echoed in every payload (at most "
                                                  f"{MAX_METADATA_BYTES} bytes as JSON)"},
}
STATE_PROPERTIES = {
    "compare_to": {"type": ["string", "null"]},
    "changes": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/ChangeCounts"}]},
}
ITEM_PROPERTIES = {"change": {"$ref": "#/components/schemas/ItemChange"}}


def change_schemas() -> dict[str, Any]:
    return {
        "ItemChange": {
            "type": "object",
            "description": "the item against its URL's record in the batch compared with",
            "properties": {
                "status": {"enum": list(CHANGE_STATUSES)},
                "fields": {"type": "object", "description": "changed fields: {old, new} each",
                           "additionalProperties": {"type": "object",
                                                    "properties": {"old": {}, "new": {}},
                                                    "required": ["old", "new"]}},
            },
            "required": ["status"],
        },
        "ChangeCounts": {
            "type": "object", "description": "items per change status",
            "properties": {status: {"type": "integer"} for status in CHANGE_STATUSES},
        },
        "WebhookEvent": {
            "type": "object",
            "description": "batch.started, item.completed, item.failed, item.changed: data holds "
                           "the batch id and counters, or the item's index, url, status, data, "
                           "error and change",
            "properties": {"type": {"enum": list(EVENT_TYPES)}, "timestamp": {"type": "string"},
                           "metadata": {"type": ["object", "null"]}, "data": {"type": "object"}},
            "required": ["type", "timestamp", "data"],
        },
        "ChangesPage": {
            "type": "object",
            "properties": {
                "batch_id": {"type": "string"},
                "compare_to": {"type": ["string", "null"]},
                "ignore_fields": {"type": "array", "items": {"type": "string"}},
                "changes": {"$ref": "#/components/schemas/ChangeCounts"},
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/ItemRecord"}},
                "pagination": {"$ref": "#/components/schemas/Pagination"},
            },
            "required": ["batch_id", "compare_to", "changes", "items", "pagination"],
        },
    }


def change_paths(operation: Any, json_body: Any, param: Any) -> dict[str, Any]:
    """``/batches/{batch_id}/changes``, built with the document's own helpers."""
    ndjson = {"application/x-ndjson": {"schema": {"$ref": "#/components/schemas/ItemRecord"}}}
    page = json_body("ChangesPage", "A page of changed items")
    return {
        "/batches/{batch_id}/changes": {
            "parameters": [param("batch_id", {"type": "string"}, "the batch id", "path")],
            "get": operation(
                "The items that changed against the batch compared with (input order): "
                "pages, or NDJSON with Accept: application/x-ndjson (or format=ndjson)",
                {200: {"description": "Changed items with old -> new per field",
                       "content": {**page["content"], **ndjson}}},
                [400, 401, 403, 404],
                parameters=[
                    param("change", {"type": "string"},
                          f"comma-separated among {list(CHANGE_STATUSES)}; "
                          "default: all but unchanged"),
                    param("page", {"type": "integer", "minimum": 1, "default": 1},
                          "1-based page"),
                    param("limit", {"type": "integer", "minimum": 1}, "page size"),
                    param("format", {"enum": ["json", "ndjson"]}, "ndjson: stream them all"),
                ],
            ),
        },
    }


def event_webhooks() -> dict[str, Any]:
    """The ``webhooks`` entries of the events besides ``batch.completed``."""
    return {
        event: {"post": {
            "summary": f"{event}: sent when asked for in webhook.events, signed and retried "
                       "as batch.completed; webhook-id is stable per event",
            "requestBody": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/WebhookEvent"}}}},
            "responses": {"2XX": {"description": "Delivered; anything else is retried"}},
        }}
        for event in EVENT_TYPES if event != "batch.completed"
    }
