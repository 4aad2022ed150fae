"""Record extraction: structured data (JSON-LD, microdata, OpenGraph) and schema coercion.

See :mod:`batchscraper.extraction.structured` for parsing and mapping a page's
structured data onto a user's JSON Schema, and
:mod:`batchscraper.extraction.coerce` for best-effort value coercion before
validation.
"""
