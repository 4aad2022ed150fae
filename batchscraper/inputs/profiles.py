"""Built-in schemas, selected with ``schema=profile:<name>``.

Field names follow the words the structured-data mapper knows
(:mod:`batchscraper.extraction.synonyms`), so pages carrying schema.org
markup fill them without an LLM call. Only the fields every page of the kind
has are required; the rest are nullable.
"""

from __future__ import annotations

import copy

from batchscraper.jsontypes import JSONObject, JSONValue

PROFILE_PREFIX = "profile:"


def _nullable(json_type: str, **extra: JSONValue) -> JSONObject:
    return {"type": [json_type, "null"], **extra}


def _strings() -> JSONObject:
    return {"type": "array", "items": {"type": "string"}}


PROFILES: dict[str, JSONObject] = {
    "product": {
        "title": "Product",
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "Product name"},
            "brand": _nullable("string"),
            "sku": _nullable("string"),
            "gtin": _nullable("string", description="EAN/UPC/ISBN"),
            "mpn": _nullable("string"),
            "price": _nullable("number", description="Current price, without currency"),
            "currency": _nullable("string", pattern="^[A-Z]{3}$", description="ISO 4217"),
            "in_stock": _nullable("boolean"),
            "description": _nullable("string"),
            "image": _nullable("string", format="uri"),
            "rating": _nullable("number"),
            "review_count": _nullable("integer", minimum=0),
        },
        "required": ["name"],
    },
    "article": {
        "title": "Article",
        "type": "object",
        "properties": {
            "headline": {"type": "string", "description": "Headline of the article"},
            "authors": {**_strings(), "description": "Author names as credited, without 'By'"},
            "published_date": _nullable("string", format="date"),
            "modified_date": _nullable("string", format="date"),
            "site_name": _nullable("string", description="Name of the publication"),
            "summary": _nullable("string"),
            "body": _nullable("string", description="Full article text"),
            "image": _nullable("string", format="uri"),
            "tags": _strings(),
        },
        "required": ["headline"],
    },
    "job_posting": {
        "title": "JobPosting",
        "type": "object",
        "properties": {
            "title": {"type": "string", "description": "Job title"},
            "company": _nullable("string", description="Hiring organization"),
            "location": _nullable("string", description="City, region and/or country"),
            "remote": _nullable("boolean", description="Whether the job can be done remotely"),
            "employment_type": _nullable("string", description="FULL_TIME, PART_TIME, ..."),
            "salary_min": _nullable("number"),
            "salary_max": _nullable("number"),
            "salary_currency": _nullable("string", pattern="^[A-Z]{3}$"),
            "date_posted": _nullable("string", format="date"),
            "valid_through": _nullable("string", format="date"),
            "description": _nullable("string"),
        },
        "required": ["title"],
    },
    "faq": {
        "title": "FAQPage",
        "type": "object",
        "properties": {
            "title": _nullable("string"),
            "questions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "question": {"type": "string"},
                        "answer": {"type": "string"},
                    },
                    "required": ["question", "answer"],
                },
            },
        },
        "required": ["questions"],
    },
    "recipe": {
        "title": "Recipe",
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "Name of the dish"},
            "author": _nullable("string"),
            "description": _nullable("string"),
            "ingredients": {**_strings(), "description": "One ingredient line per item"},
            "steps": {**_strings(), "description": "Instructions, one step per item"},
            "prep_time_minutes": _nullable("integer", minimum=0),
            "cook_time_minutes": _nullable("integer", minimum=0),
            "total_time_minutes": _nullable("integer", minimum=0),
            "servings": _nullable("integer", minimum=1),
            "calories": _nullable("number", description="Calories per serving"),
            "image": _nullable("string", format="uri"),
        },
        "required": ["name", "ingredients"],
    },
    "event": {
        "title": "Event",
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "start_date": {"type": "string", "format": "date"},
            "end_date": _nullable("string", format="date"),
            "venue": {
                "type": ["object", "null"],
                "properties": {
                    "name": _nullable("string"),
                    "street_address": _nullable("string"),
                    "city": _nullable("string"),
                    "postal_code": _nullable("string"),
                    "country": _nullable("string"),
                },
            },
            "performers": _strings(),
            "organizer": _nullable("string"),
            "price": _nullable("number"),
            "currency": _nullable("string", pattern="^[A-Z]{3}$"),
            "url": _nullable("string", format="uri"),
        },
        "required": ["name", "start_date"],
    },
}


def profile_names() -> list[str]:
    """The names accepted after ``profile:``."""
    return sorted(PROFILES)


def profile_schema(name: str) -> JSONObject | None:
    """A fresh copy of the built-in schema ``name``, or None when there is none."""
    schema = PROFILES.get(name.strip().lower().replace("-", "_"))
    return copy.deepcopy(schema) if schema is not None else None
