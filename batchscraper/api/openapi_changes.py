"""The OpenAPI parts of change detection (the item ``change``, the batch's ``changes`` counts,
``compare_to`` / ``ignore_fields`` on submit, ``GET /batches/{batch_id}/changes``) and of event
webhooks (``webhook.events`` / ``webhook.metadata``, the events' payloads) and of monitors
(``monitors`` on submit, their rules and results on the batch)."""

from __future__ import annotations

from collections.abc import Callable

from batchscraper.changes import CHANGE_STATUSES, MAX_CHANGE_VALUE_BYTES
from batchscraper.events import EVENT_TYPES, MAX_METADATA_BYTES

COMPARE_PROPERTIES = {
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
RATIO = {"type": "number", "minimum": 0, "maximum": 1}
MONITOR_RULES = {
    "type": "object", "additionalProperties": False,
    "description": "judged when the batch ends; a failure sends batch.alert",
    "properties": {
        "min_completed_ratio": RATIO,
        "min_field_coverage": {"type": "object", "additionalProperties": RATIO,
                               "description": "schema field path -> records holding it / "
                                              "records"},
        "max_error_ratio": {"type": "object", "additionalProperties": RATIO,
                            "description": "error code -> items failed with it / items"},
        "min_records": {"type": "integer", "minimum": 0},
    },
}
MONITOR_RESULT = {
    "type": "object", "required": ["name", "value", "threshold", "ok"],
    "properties": {"name": {"type": "string"}, "value": {"type": "number"},
                   "threshold": {"type": "number"}, "ok": {"type": "boolean"}},
}
SUBMIT_PROPERTIES = {**COMPARE_PROPERTIES, "monitors": MONITOR_RULES}
DETAIL_PROPERTIES = {
    "monitor_rules": {"oneOf": [{"type": "null"}, MONITOR_RULES],
                      "description": "the monitors given at submit (their results: monitors)"},
}
STATE_PROPERTIES = {
    "monitors": {"oneOf": [{"type": "null"}, {"type": "array", "items": MONITOR_RESULT}],
                 "description": "each monitor's result, once the batch ended"},
    "compare_to": {"type": ["string", "null"]},
    "changes": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/ChangeCounts"}]},
}
ITEM_PROPERTIES = {"change": {"$ref": "#/components/schemas/ItemChange"}}


def change_schemas() -> dict[str, object]:
    return {
        "ItemChange": {
            "type": "object",
            "description": "the item against its URL's record in the batch compared with",
            "properties": {
                "status": {"enum": list(CHANGE_STATUSES)},
                "fields": {
                    "type": "object",
                    "description": "changed fields: {old, new} each; a field whose values are "
                                   f"too large to keep (over {MAX_CHANGE_VALUE_BYTES} bytes of "
                                   "JSON on the change, largest first) keeps only their sizes",
                    "additionalProperties": {"oneOf": [
                        {"type": "object", "properties": {"old": {}, "new": {}},
                         "required": ["old", "new"]},
                        {"type": "object",
                         "properties": {"values_omitted": {"const": True},
                                        "old_bytes": {"type": "integer"},
                                        "new_bytes": {"type": "integer"}},
                         "required": ["values_omitted", "old_bytes", "new_bytes"],
                         "additionalProperties": False},
                    ]},
                },
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


def change_paths(
    operation: Callable[..., dict],
    json_body: Callable[[str, str], dict],
    param: Callable[..., dict],
) -> dict[str, object]:
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


def event_webhooks() -> dict[str, object]:
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
