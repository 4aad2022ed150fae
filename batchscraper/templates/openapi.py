"""The OpenAPI entries of ``/templates`` and of a batch's ``templates`` counts (merged into
:mod:`batchscraper.api.openapi`)."""

from __future__ import annotations

from collections.abc import Callable

from batchscraper.templates.store import STATUSES

NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
SHARE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
COUNT = {"type": "integer", "minimum": 0}
#: ``templates`` on a batch's state: what each template did in this batch
BATCH_TEMPLATES = {
    "type": "object",
    "description": "per template id: pages it extracted in this batch, misses (pages it could "
                   "not fill: the LLM answered), audits, disagreements, learned (1: learned here)",
    "additionalProperties": {"type": "object", "additionalProperties": COUNT},
}
RULE = {
    "type": "object",
    "description": "where a field is: xpath, take (text or an attribute), regex (its group is "
                   "the value), kind (string, number, integer, list); absent: the field was "
                   "empty on every sample",
    "properties": {"xpath": {"type": "string"}, "take": {"type": "string"},
                   "regex": {"type": "string"}, "kind": {"type": "string"},
                   "absent": {"type": "boolean"}},
    "required": ["kind"],
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, object], required: list[str] | None = None, **extra: object
         ) -> dict[str, object]:
    return {"type": "object", "properties": properties, "required": required or [], **extra}


def template_schemas() -> dict[str, object]:
    """Component schemas of the template endpoints."""
    summary = _obj(
        {
            "template_id": {"type": "string", "pattern": "^tpl_[0-9a-f]{16}$"},
            "host": {"type": "string", "description": "host name (and port) of its pages"},
            "schema_fp": {"type": "string", "description": "fingerprint of the batch schema"},
            "version": {"type": "integer", "minimum": 1,
                        "description": "1 + the versions of this key before it (relearned)"},
            "status": {"enum": list(STATUSES)},
            "reason": {"type": ["string", "null"],
                       "description": "why retired or abandoned, or why its pages do not fit "
                                      "the schema (a required field it learned as absent)"},
            "fields": {"type": "array", "items": {"type": "string"},
                       "description": "the fields its selectors extract"},
            "samples_kept": COUNT,
            "attempts": {**COUNT, "description": "candidates learned so far"},
            "hits": {**COUNT, "description": "pages it extracted (every batch)"},
            "misses": {**COUNT, "description": "matching pages it could not fill"},
            "hit_rate": {**SHARE, "description": "hits / (hits + misses)"},
            "audits": {**COUNT, "description": "pages also asked from the LLM and compared"},
            "disagreements": COUNT,
            "accuracy": {**SHARE, "description": "audits that agreed / audits"},
            "batch_id": {"type": ["string", "null"], "description": "the batch it was first "
                                                                    "seen in"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": NULLABLE_TIME,
            "activated_at": NULLABLE_TIME,
            "retired_at": NULLABLE_TIME,
            "links": _obj({"self": {"type": "string"}}, ["self"]),
        },
        ["template_id", "host", "schema_fp", "version", "status", "fields", "hits", "misses",
         "hit_rate", "audits", "disagreements", "accuracy", "created_at", "links"],
    )
    return {
        "TemplateSummary": summary,
        "Template": {"allOf": [_ref("TemplateSummary"), _obj(
            {"rules": {"type": "object", "additionalProperties": RULE},
             "samples": {"type": "array", "items": _obj(
                 {"url": {"type": "string"}, "answer": {"type": "object"}}, ["url", "answer"])},
             "recent": _obj({"outcomes": COUNT, "bad": COUNT}, ["outcomes", "bad"],
                            description="the last misses and audits; too many bad retire it")},
            ["rules", "samples", "recent"])]},
        "TemplateList": _obj({"templates": {"type": "array", "items": _ref("TemplateSummary")},
                              "pagination": _ref("Pagination")}, ["templates", "pagination"]),
        "TemplateDeleted": _obj({"template_id": {"type": "string"}, "deleted": {"const": True}},
                                ["template_id", "deleted"]),
    }


def template_paths(
    operation: Callable[..., dict],
    json_body: Callable[[str, str], dict],
    param: Callable[..., dict],
) -> dict[str, object]:
    """The ``/templates`` paths, built with the document's own helpers."""
    template_id = param("template_id", {"type": "string"}, "the template id", "path")
    filters = [
        param("page", {"type": "integer", "minimum": 1, "default": 1}, "1-based page"),
        param("limit", {"type": "integer", "minimum": 1}, "page size"),
        param("status", {"enum": list(STATUSES)}, "only templates with this status"),
        param("host", {"type": "string", "maxLength": 261}, "only this host (name[:port])"),
        param("batch_id", {"type": "string"},
              "only the templates this batch used or learned (a batch of the caller's)"),
    ]
    return {
        "/templates": {
            "get": operation(
                "The caller's learned templates, newest first (an owner's templates serve "
                "only that owner's batches)",
                {200: json_body("TemplateList", "One page of templates")},
                [400, 401, 403, 404], parameters=filters,
            ),
        },
        "/templates/{template_id}": {
            "parameters": [template_id],
            "get": operation("A template: its selectors, samples, hits, misses, audits",
                             {200: json_body("Template", "The template")}, [401, 403, 404]),
            "delete": operation(
                "Delete a template version (its shape is learned again on its next page)",
                {200: json_body("TemplateDeleted", "Deleted")}, [401, 403, 404]),
        },
    }
