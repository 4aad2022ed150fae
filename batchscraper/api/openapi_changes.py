"""The OpenAPI parts of change detection: the item ``change``, the batch's ``changes`` counts,
``compare_to`` / ``ignore_fields`` on submit, and ``GET /batches/{batch_id}/changes``."""

from __future__ import annotations

from typing import Any

from batchscraper.changes import CHANGE_STATUSES

SUBMIT_PROPERTIES = {
    "compare_to": {"type": "string", "pattern": "^b_[0-9a-f]{32}$",
                   "description": "a batch of the same schema: each item gets a change against "
                                  "its URL's record there (a schedule's run: its previous run)"},
    "ignore_fields": {"type": "array", "maxItems": 100, "items": {"type": "string"},
                      "description": "schema field paths (a or a.b) left out of the comparison"},
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
