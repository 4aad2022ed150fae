"""How people find and recognise a batch: its name and tags (given), and an overview made
when it is stored (URL count by domain, the schema's field paths)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from batchscraper.exceptions import BatchInputError
from batchscraper.jsontypes import Document

if TYPE_CHECKING:
    from batchscraper.inputs import BatchSpec

MAX_NAME = 200
MAX_TAGS = 20
MAX_TAG = 50
TOP_DOMAINS = 5


@dataclass(frozen=True)
class Labels:
    name: str | None = None
    tags: tuple[str, ...] = ()

    def stored(self) -> Document:
        """The fields written on the batch document."""
        return {"name": self.name, "tags": list(self.tags)}


def parse_labels(name: object, tags: object) -> Labels:
    """``name`` (text, at most 200 characters) and ``tags`` (up to 20 short texts); 400
    ``INVALID_INPUT`` listing every problem."""
    problems: list[dict[str, str]] = []
    if name is not None:
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            problems.append({"field": "name", "message": "printable text, not empty"})
        elif len(name) > MAX_NAME:
            problems.append({"field": "name", "message": f"at most {MAX_NAME} characters"})
    clean: list[str] = []
    if tags is not None:
        if not isinstance(tags, list) or len(tags) > MAX_TAGS:
            problems.append({"field": "tags", "message": f"a list of up to {MAX_TAGS} texts"})
        else:
            for n, tag in enumerate(tags):
                if not isinstance(tag, str) or not tag.strip() or not tag.isprintable():
                    problems.append({"field": f"tags[{n}]", "message": "printable text, not empty"})
                elif len(tag) > MAX_TAG:
                    problems.append({"field": f"tags[{n}]",
                                     "message": f"at most {MAX_TAG} characters"})
                elif tag.strip() not in clean:
                    clean.append(tag.strip())
    if problems:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise BatchInputError(summary, details=problems)
    return Labels(name=name.strip() if isinstance(name, str) and name else None,
                  tags=tuple(clean))


def batch_overview(spec: BatchSpec) -> Document:
    """What the batch list shows besides counters: the busiest domains (URLs each), how many
    domains, the schema's field paths."""
    hosts = Counter(urlsplit(entry.url).hostname or "" for entry in spec.urls
                    if entry.invalid is None)
    return {
        "domains": [{"domain": host, "urls": n} for host, n in hosts.most_common(TOP_DOMAINS)],
        "domain_count": len(hosts),
        "fields": data_field_paths(spec.schema),
    }


def data_field_paths(schema: object, prefix: str = "") -> list[str]:
    """The schema's fields as ``a.b`` paths (nested objects flattened), in schema order."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if schema and isinstance(schema, dict) and schema.get("type") == "array":
        properties = (schema.get("items") or {}).get("properties")
    paths: list[str] = []
    for name, sub in (properties or {}).items():
        nested = sub.get("properties") if isinstance(sub, dict) else None
        if nested and sub.get("type", "object") == "object":
            paths.extend(data_field_paths(sub, f"{prefix}{name}."))
        else:
            paths.append(prefix + name)
    return paths
