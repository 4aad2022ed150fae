"""The OpenAPI 3.1 description of the batch API, served at ``/openapi.json``.

Option and per-URL field lists come from :mod:`batchscraper.inputs`, so the
document follows the parser; the tests validate real responses against the
schemas below.
"""

from __future__ import annotations

from dataclasses import fields

from batchscraper.api.openapi_changes import (
    DETAIL_PROPERTIES,
    ITEM_PROPERTIES,
    STATE_PROPERTIES,
    SUBMIT_PROPERTIES,
    WEBHOOK_PROPERTIES,
    change_paths,
    change_schemas,
    event_webhooks,
)
from batchscraper.inputs import OPTION_RANGES, URL_KEYS, BatchOptions
from batchscraper.inputs.extraction import FORMATS
from batchscraper.schedules.openapi import SCHEDULE_ERRORS, schedule_paths, schedule_schemas
from batchscraper.store import FINAL_BATCH_STATUSES, ITEM_STATUSES
from batchscraper.templates.openapi import BATCH_TEMPLATES, template_paths, template_schemas

VERSION = "1.0.0"
BATCH_STATUSES = ["pending", "running", *FINAL_BATCH_STATUSES]
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
AS_OF = {"type": "string", "format": "date-time",
         "description": "pass as updated_after to get the items that change after this read"}
ERRORS = {
    400: "Malformed request: bad JSON, wrong shape, bad query parameter (INVALID_INPUT)",
    401: "No API key, or an unknown one (UNAUTHORIZED)",
    403: "The batch belongs to another API key's owner (FORBIDDEN); only an admin key may "
    "list another owner's batches (ADMIN_REQUIRED)",
    404: "No such batch (NOT_FOUND)",
    405: "Method not allowed here (METHOD_NOT_ALLOWED)",
    409: "Wrong state: finished batch, nothing to retry, Idempotency-Key reused with "
    "another body (INVALID_STATE, NOTHING_TO_RETRY, IDEMPOTENCY_CONFLICT, IDEMPOTENCY_IN_PROGRESS)",
    413: "Too many URLs or request body too large (TOO_LARGE)",
    415: "The body declares a type other than application/json (UTF-8) (UNSUPPORTED_MEDIA_TYPE)",
    422: "Invalid URLs (per-index details), schema, options or webhook "
    "(INVALID_URL, INVALID_SCHEMA, INVALID_OPTION, INVALID_WEBHOOK: webhook.url, .secret, "
    ".events[i], .metadata); monitors (INVALID_MONITORS: monitors.<rule>[.<field or code>]); "
    "compare_to / ignore_fields (INVALID_COMPARE; details: NOT_FOUND or SCHEMA_MISMATCH for "
    "compare_to, INVALID_COMPARE for ignore_fields[i]); details list every problem with its "
    "field and code; a prompt without a schema and no LLM endpoint configured "
    "(INVALID_INPUT); schedules: "
    + SCHEDULE_ERRORS,
    503: "Scrapyd has no such project, or the database is unreachable (SERVICE_UNAVAILABLE); "
    "the batch is stored but its job could not be queued (JOB_NOT_SCHEDULED, details.batch_id)",
}


PROXY = {
    "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 100}],
    "description": "http://, https://, socks5:// (the checked address is sent to the proxy) "
    "or socks5h:// (the name is sent) proxy URL(s), with user:password@ if needed; "
    "socks4/socks4a/socks are refused (INVALID_OPTION, per URL INVALID_URL). Used for fetched "
    "and rendered pages alike (the browser goes through the egress guard, chained to the "
    "proxy); rotated per domain, a failing one benched (PROXY_FAILED when all fail); served "
    "redacted (***:***)",
}
FORMAT_LIST = {"type": "array", "items": {"enum": list(FORMATS)}, "minItems": 1}
# the per-URL keys that need more than a name (the rest are described in the README)
URL_OPTION_SCHEMAS: dict[str, object] = {
    "url": {"type": "string", "format": "uri"},
    "proxy": PROXY,
    "formats": {**FORMAT_LIST, "description": "this URL's kept content (overrides options)"},
    "extraction_schema": {"type": ["object", "array", "string"],
                          "description": "this URL's own schema (JSON Schema or field list)"},
    "extraction_prompt": {"type": "string", "maxLength": 4000},
    "extraction_profile": {"type": "string",
                           "description": "auto (the batch's schema) or a built-in profile"},
    "include_raw_html": {"type": "boolean", "description": "adds html to formats"},
    "cache": {"type": "boolean", "description": "accepted (AlterLab); no effect yet"},
    "cost_controls": {"type": "object", "description": "accepted (AlterLab tiers); no effect"},
    "timeout": {"type": "number", "minimum": 1, "maximum": 300},
}


# options whose values need more than a name (numeric ranges come from OPTION_RANGES)
OPTION_SCHEMAS: dict[str, object] = {
    "proxy": PROXY,
    "expires_in": {"type": ["integer", "string", "null"],
                   "description": 'seconds, or "7d", "12h", "30m", "90s" (60 s to 3650 days)'},
    "store_content": {"type": "boolean", "description": "false: records only, no page kept"},
    "ignore_invalid_urls": {"type": "boolean",
                            "description": "bad entries become failed INVALID_URL items"},
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, object], required: list[str] | None = None, **extra: object) -> dict:
    schema: dict[str, object] = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = required
    return schema


def extend(base: str, properties: dict[str, object], required: list[str]) -> dict[str, object]:
    return {"allOf": [ref(base), obj(properties, required)]}


def _option_schemas() -> dict[str, object]:
    out: dict[str, object] = {}
    for option in fields(BatchOptions):
        if option.name in OPTION_RANGES:
            kind, low, high = OPTION_RANGES[option.name]
            schema: dict[str, object] = {"type": "integer" if kind == "int" else "number"}
            schema["minimum"] = low
            if high:
                schema["maximum"] = high
            if option.default is None:
                schema["type"] = [schema["type"], "null"]
            out[option.name] = schema
        else:
            out[option.name] = OPTION_SCHEMAS.get(option.name, {})
    return out


def _schemas() -> dict[str, object]:
    counters = {"type": "object", "additionalProperties": {"type": "number"}}
    counters["required"] = ["total", *ITEM_STATUSES]
    url_object = obj({key: {} for key in sorted(URL_KEYS)}, ["url"])
    url_object["properties"].update(URL_OPTION_SCHEMAS)
    webhook = obj(
        {"url": {"type": "string", "format": "uri"}, "secret": {"type": "string"},
         **WEBHOOK_PROPERTIES}, ["url"]
    )
    webhook["additionalProperties"] = False
    schema_value = {"type": ["object", "array", "string"],
                    "description": "JSON Schema, field list or profile:<name>; omitted: "
                    "with a prompt the LLM answers a free-form object (prompt-only), without "
                    "one each record is the page's metadata and content (content-only)"}
    return {
        "Error": obj(
            {
                "error": obj(
                    {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
                    ["code", "message", "details"],
                )
            },
            ["error"],
        ),
        "Counters": counters,
        "Progress": obj(
            {"done": {"type": "integer"}, "total": {"type": "integer"},
             "percent": {"type": "number", "minimum": 0, "maximum": 100}},
            ["done", "total", "percent"],
        ),
        "Links": obj({k: {"type": "string"} for k in ("self", "items", "retry")}, ["self"]),
        "Pagination": obj(
            {k: {"type": "integer", "minimum": 0} for k in ("page", "limit", "total",
                                                             "total_pages")},
            ["page", "limit", "total", "total_pages"],
        ),
        "BatchSubmit": obj(
            {
                "urls": {"type": "array", "minItems": 1,
                         "items": {"oneOf": [{"type": "string"}, url_object]}},
                "schema": schema_value,
                "fields": {"type": "array", "description": "alias of schema (a field list)"},
                "extraction_schema": {**schema_value, "description": "alias of schema"},
                "prompt": {"type": "string", "maxLength": 4000},
                "extraction_prompt": {"type": "string", "description": "alias of prompt"},
                "options": obj({**_option_schemas(), "timeout_ms": {
                    "type": "number", "description": "Runo's: timeout_per_url in milliseconds"}},
                    additionalProperties=False),
                "webhook": webhook,
                "webhook_url": {"type": "string", "format": "uri",
                                "description": "alias of webhook.url (a secret is generated)"},
                "rerun_of": {"type": "string",
                             "description": "a batch id: its URLs, schema, prompt and options"},
                "name": {"type": "string", "maxLength": 200,
                         "description": "to find the batch by (list search, dashboard)"},
                "tags": {"type": "array", "maxItems": 20,
                         "items": {"type": "string", "maxLength": 50}},
                **SUBMIT_PROPERTIES,
                "output": {"enum": ["json", "markdown"],
                           "description": "Spidra's: markdown adds that format"},
                "async_mode": {"type": "boolean",
                               "description": "Runo's: false answers like ?wait=60 when the "
                               "batch has at most BATCH_SYNC_MAX_URLS URLs"},
            },
            additionalProperties=False,
        ),
        "MoreUrls": obj(
            {"urls": {"type": "array", "minItems": 1,
                      "items": {"oneOf": [{"type": "string"}, url_object]}}},
            ["urls"], additionalProperties=False,
        ),
        "UrlsAppended": extend(
            "BatchSummary",
            {"appended": obj({"first_index": {"type": "integer", "minimum": 0},
                              "count": {"type": "integer", "minimum": 1}},
                             ["first_index", "count"]),
             "jobs": {"type": "array", "items": {"type": "string"}}},
            ["appended", "jobs"],
        ),
        "BatchResults": extend(
            "BatchSummary",
            {"results": {"type": "array", "items": ref("ItemRecord"),
                         "description": "every item's record, in input order"}},
            ["results"],
        ),
        "BatchSummary": obj(
            {
                "batch_id": {"type": "string", "pattern": "^b_[0-9a-f]{32}$"},
                "owner": {"type": ["string", "null"], "description": "the owner of the API "
                          "key that submitted it; null: stored without one (scrapy crawl, "
                          "or before API keys), BATCH_API_DEFAULT_OWNER's"},
                "name": {"type": ["string", "null"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "overview": {"oneOf": [{"type": "null"}, obj(
                    {"domains": {"type": "array", "items": obj(
                        {"domain": {"type": "string"}, "urls": {"type": "integer"}})},
                     "domain_count": {"type": "integer"},
                     "fields": {"type": "array", "items": {"type": "string"}}},
                    ["domains", "domain_count", "fields"],
                    description="the busiest domains (URLs each), the schema's field paths")]},
                "status": {"enum": BATCH_STATUSES},
                "total": {"type": "integer"},
                "counters": ref("Counters"),
                "progress": ref("Progress"),
                "created_at": {"type": "string", "format": "date-time"},
                "started_at": NULLABLE_TIME,
                "finished_at": NULLABLE_TIME,
                "expires_at": {**NULLABLE_TIME, "description": "when the batch, its items, "
                               "content and screenshots are removed (expires_in, "
                               "BATCH_RETENTION_DAYS); null: kept"},
                "links": ref("Links"),
            },
            ["batch_id", "status", "total", "counters", "progress", "created_at", "links"],
        ),
        "BatchAccepted": extend(
            "BatchSummary",
            {"jobs": {"type": "array", "items": {"type": "string"}},
             "webhook": obj({"url": {"type": "string"}, "secret": {"type": "string"}}),
             "invalid_urls": {
                 "type": "array", "description": "ignore_invalid_urls: the entries stored as "
                 "failed items (INVALID_URL)",
                 "items": obj({"index": {"type": "integer"}, "url": {"type": "string"},
                               "reason": {"type": "string"}}, ["index", "url", "reason"])}},
            ["jobs"],
        ),
        "BatchDetail": extend(
            "BatchState",
            {
                "schema": {"type": ["object", "null"]},
                "prompt": {"type": ["string", "null"]},
                "options": {"type": "object"},
                **DETAIL_PROPERTIES,
                "items": {"type": "array", "items": ref("ItemRecord")},
                "items_pagination": ref("Pagination"),
                "as_of": AS_OF,
            },
            ["schema", "options", "items", "items_pagination", "as_of"],
        ),
        "BatchState": extend(
            "BatchSummary",
            {
                "error": {"type": ["object", "null"]},
                "timeline": {"type": "object", "additionalProperties": {"type": "integer"},
                             "description": "with include=timeline: items finished per UTC "
                                            "minute, keyed by minutes since 1970"},
                "rerun_of": {"type": ["string", "null"]},
                "schedule": {"oneOf": [{"type": "null"},
                                       {"$ref": "#/components/schemas/ScheduleOfRun"}],
                             "description": "the schedule whose run the batch is"},
                "failures": {"type": "object", "additionalProperties": {"type": "integer"},
                             "description": "failed items per error code"},
                "domains": {"type": "array", "items": obj(
                    {"domain": {"type": "string"}, "requests": {"type": "integer"},
                     "errors": {"type": "integer"}, "error_rate": {"type": "number"},
                     "delay": {"type": "number"}, "breaker": {"type": "string"}},
                    ["domain"])},
                "jobs": {"type": "array", "items": obj(
                    {"id": {"type": "string"},
                     "kind": {"enum": ["submit", "retry", "append", "reconcile"]},
                     "scheduled_at": {"type": "string"}, "active": {"type": "boolean"}},
                    ["id", "kind", "active"])},
                "webhook": {"oneOf": [{"type": "null"}, obj(
                    {"url": {"type": "string"}, "status": {"type": ["string", "null"]},
                     "events": {"type": "array", "items": {"type": "string"}},
                     "metadata": {"type": ["object", "null"]},
                     "deliveries": {"type": "array", "items": {"type": "object"}}},
                    ["url", "deliveries"])]},
                "templates": BATCH_TEMPLATES,
                **STATE_PROPERTIES,
            },
            ["failures", "domains", "jobs"],
        ),
        "ItemRecord": obj(
            {
                "batch_id": {"type": "string"},
                "index": {"type": "integer", "minimum": 0},
                "url": {"type": "string"},
                "status": {"enum": list(ITEM_STATUSES)},
                "updated_at": NULLABLE_TIME,
                "data": {},
                "error": {"oneOf": [{"type": "null"}, obj(
                    {"code": {"type": "string"}, "message": {"type": "string"},
                     "retryable": {"type": "boolean"}}, ["code", "message"])]},
                "attempts": {"type": "integer"},
                "render_mode": {"enum": ["fetch", "headless", "pdf"]},
                "cache": {"enum": ["hit", "revalidated", "miss", None],
                          "description": "with max_age: how the fetch cache served the page"},
                "pdf": {"oneOf": [{"type": "null"}, obj(
                    {"pages": {"type": "integer"}, "pages_read": {"type": "integer"},
                     "title": {"type": ["string", "null"]}, "author": {"type": ["string", "null"]},
                     "created": NULLABLE_TIME, "modified": NULLABLE_TIME},
                    ["pages", "pages_read"],
                    description="a PDF page's page count and document information")]},
                **ITEM_PROPERTIES,
            },
            ["batch_id", "index", "url", "status"],
        ),
        "ItemsPage": obj(
            {"batch_id": {"type": "string"},
             "items": {"type": "array", "items": ref("ItemRecord")},
             "pagination": ref("Pagination"),
             "as_of": AS_OF},
            ["batch_id", "items", "pagination", "as_of"],
        ),
        "BatchList": obj(
            {"batches": {"type": "array", "items": ref("BatchSummary")},
             "pagination": ref("Pagination")},
            ["batches", "pagination"],
        ),
        "CancelResult": extend(
            "BatchSummary",
            {"jobs": obj({"unqueued": {"type": "integer"}, "signalled": {"type": "integer"}},
                         ["unqueued", "signalled"])},
            ["jobs"],
        ),
        "RetryRequest": obj({"only_retryable": {"type": "boolean"}}, additionalProperties=False),
        "RetryAccepted": extend(
            "BatchSummary",
            {"retried": {"type": "integer", "minimum": 1},
             "jobs": {"type": "array", "items": {"type": "string"}}},
            ["retried", "jobs"],
        ),
        "BatchCompletedEvent": obj(
            {"type": {"const": "batch.completed"}, "timestamp": {"type": "string"},
             "metadata": {"type": ["object", "null"]},
             "data": obj({"batch_id": {"type": "string"}, "status": {"enum": BATCH_STATUSES},
                          "counters": ref("Counters"), "links": ref("Links")},
                         ["batch_id", "status", "counters", "links"])},
            ["type", "timestamp", "data"],
        ),
    }


def _json(schema: str, description: str, media: str = "application/json") -> dict:
    return {"description": description, "content": {media: {"schema": ref(schema)}}}


def _operation(summary: str, ok: dict[int, dict], errors: list[int], **extra: object) -> dict:
    responses: dict[str, object] = {str(code): answer for code, answer in ok.items()}
    for code in errors:
        responses[str(code)] = _json("Error", ERRORS[code])
    return {"summary": summary, "responses": responses, **extra}


def _param(name: str, schema: dict[str, object], description: str, where: str = "query") -> dict:
    return {"name": name, "in": where, "schema": schema, "description": description,
            "required": where == "path"}


def _paths() -> dict[str, object]:
    page = _param("page", {"type": "integer", "minimum": 1, "default": 1}, "1-based page")
    limit = _param("limit", {"type": "integer", "minimum": 1}, "page size (BATCH_API_* bounds)")
    limit_or_zero = _param("limit", {"type": "integer", "minimum": 0},
                           "page size (BATCH_API_* bounds); 0: no items")
    batch_id = _param("batch_id", {"type": "string"}, "the batch id", "path")
    item_status = _param("status", {"enum": list(ITEM_STATUSES)}, "only items with this status")
    error_code = _param("error_code", {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,63}$"},
                        "only items that ended with this error code, e.g. HTTP_ERROR")
    item_reads = [
        _param("updated_after", {"type": "string", "format": "date-time"},
               "only items whose status changed after this time (an answer's as_of)"),
        _param("include", {"type": "string"},
               "content: add kept page content to items (left out of pages by default); "
               "timeline: add the batch's items finished per minute; comma-separated"),
        _param("fields", {"type": "string"},
               "comma-separated item fields to return, e.g. index,status,data"),
        _param("sort", {"type": "string"},
               "index (default) or data.<field> (a schema field, nested as a.b); a leading - "
               "sorts descending; items without the field come last"),
        _param("match", {"type": "string"},
               "data.<field>:<text>: only items whose field contains the text (any case)"),
    ]
    ndjson = {"application/x-ndjson": {"schema": ref("ItemRecord")}}
    return {
        "/batches": {
            "post": _operation(
                "Submit a batch: validated, stored, scheduled as Scrapyd job(s)",
                {202: _json("BatchAccepted", "Accepted (also for an Idempotency-Key replay)"),
                 200: _json("BatchResults", "With wait: the batch ended within it; every "
                            "record in input order")},
                [400, 401, 409, 413, 415, 422, 503],
                parameters=[_param("Idempotency-Key", {"type": "string", "maxLength": 255},
                                   "same key and body: the same batch", "header"),
                            _param("wait", {"type": "integer", "minimum": 0, "maximum": 60},
                                   "seconds to wait for the batch to end (at most "
                                   "BATCH_SYNC_MAX_URLS URLs, else 413): 200 with the results "
                                   "when it does, else the usual 202 (it keeps running)")],
                requestBody={"required": True,
                             "content": {"application/json": {"schema": ref("BatchSubmit")}}},
            ),
            "get": _operation(
                "The caller's batches (an admin key: every owner's), newest first",
                {200: _json("BatchList", "One page of batches")},
                [400, 401, 403],
                parameters=[page, limit, _param("status", {"enum": BATCH_STATUSES},
                                                "only batches with this status"),
                            _param("q", {"type": "string", "maxLength": 200},
                                   "words that must each appear in the batch's id, name, "
                                   "tags, domains or field names (any case)"),
                            _param("owner", {"type": "string", "maxLength": 200},
                                   "only this owner's batches (an admin key sees every "
                                   "owner's; another key may name only its own: else 403 "
                                   "ADMIN_REQUIRED)")],
            ),
        },
        "/batches/{batch_id}": {
            "parameters": [batch_id],
            "get": _operation(
                "Status, counters, progress, inputs and one page of items (input order); "
                "limit=0: the batch's state only (BatchState: no items, no inputs), for polls",
                {200: {"description": "The batch", "content": {"application/json": {
                    "schema": {"oneOf": [ref("BatchDetail"), ref("BatchState")]}}}}},
                [400, 401, 403, 404],
                parameters=[page, limit_or_zero, item_status, error_code, *item_reads],
            ),
            "delete": _operation(
                "Cancel: unqueue or stop its jobs, cancel unfinished items",
                {200: _json("CancelResult", "Cancelled (again, for a cancelled batch)")},
                [401, 403, 404, 409],
            ),
        },
        "/batches/{batch_id}/items": {
            "parameters": [batch_id],
            "get": _operation(
                "Every item record in input order: pages, or NDJSON with "
                "Accept: application/x-ndjson (or format=ndjson)",
                {200: {"description": "A page of records, or one record per line",
                       "content": {"application/json": {"schema": ref("ItemsPage")}, **ndjson}}},
                [400, 401, 403, 404],
                parameters=[page, limit, item_status, error_code, *item_reads,
                            _param("format", {"enum": ["json", "ndjson"]},
                                   "ndjson: stream (with content unless fields is given)")],
            ),
        },
        "/batches/{batch_id}/urls": {
            "parameters": [batch_id],
            "post": _operation(
                "Append URLs (indexes continue; a finished batch is reopened) in new job(s)",
                {202: _json("UrlsAppended", "Appended (also for an Idempotency-Key replay)")},
                [400, 401, 403, 404, 409, 413, 415, 422, 503],
                parameters=[_param("Idempotency-Key", {"type": "string", "maxLength": 255},
                                   "same key and body: the same URLs, appended once", "header")],
                requestBody={"required": True,
                             "content": {"application/json": {"schema": ref("MoreUrls")}}},
            ),
        },
        "/batches/{batch_id}/retry": {
            "parameters": [batch_id],
            "post": _operation(
                "Failed items (or only retryable ones) back to pending, in new job(s)",
                {202: _json("RetryAccepted", "Retrying")},
                [400, 401, 403, 404, 409, 413, 415, 503],
                requestBody={"required": False,
                             "content": {"application/json": {"schema": ref("RetryRequest")}}},
            ),
        },
        "/openapi.json": {
            "get": {"summary": "This document", "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1"}}},
        },
    }


def openapi_document(keys_enabled: bool) -> dict[str, object]:
    """The whole document; ``security`` lists the API-key schemes when keys are configured."""
    auth = "API keys are required." if keys_enabled else "No API keys are configured: open API."
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "batchscraper batch API",
            "version": VERSION,
            "description": "Submit lists of URLs with a schema; watch, cancel, retry and "
            "export the records. Errors: {\"error\": {\"code\", \"message\", \"details\"}}. "
            + auth,
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}] if keys_enabled else [],
        "paths": {**_paths(), **change_paths(_operation, _json, _param),
                  **schedule_paths(_operation, _json, _param),
                  **template_paths(_operation, _json, _param)},
        "webhooks": {
            "batch.completed": {
                "post": {
                    "summary": "Sent once per run of a batch to a final status, signed per "
                    "Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature)",
                    "requestBody": {"content": {"application/json": {
                        "schema": ref("BatchCompletedEvent")}}},
                    "responses": {"2XX": {"description": "Delivered; anything else is retried"}},
                }
            },
            **event_webhooks(),
        },
        "components": {
            "schemas": {**_schemas(), **change_schemas(), **schedule_schemas(),
                        **template_schemas()},
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
