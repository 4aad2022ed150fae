"""The types of data that comes from outside and goes back out: JSON values and stored documents.

Values read from a request body, a page's JSON-LD, an LLM's answer, a user's schema or a
MongoDB document are typed as what they can be, not as ``Any``: code that uses one narrows
it first (``isinstance``), so a page that puts a list where a string was expected is a
branch the type checker asks for, not a crash. The aliases:

- :data:`JSONValue`: anything ``json.loads`` returns.
- :data:`JSONObject`: a JSON object (a record, a schema, a request body, an answer).
- :data:`Document`: a MongoDB document or part of one (BSON adds dates and binary data to
  JSON's types, so its values are ``object``); :data:`Query` the same for filters and
  updates, which are built here and read only by pymongo.
"""

from __future__ import annotations

from typing import TypeAlias

JSONScalar: TypeAlias = "str | int | float | bool | None"
JSONValue: TypeAlias = "JSONScalar | list[JSONValue] | dict[str, JSONValue]"
JSONObject: TypeAlias = "dict[str, JSONValue]"

Document: TypeAlias = "dict[str, object]"
Query: TypeAlias = "dict[str, object]"
