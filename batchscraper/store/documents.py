"""The shapes of what the store keeps: parts of item and batch documents.

Most reads give :data:`~batchscraper.jsontypes.Document` (their fields depend on the
batch's options and on how far an item got); the parts with a fixed set of keys are
typed here, and :class:`ItemDocument` names the fields an item can have, for reads of
a few of them.
"""

from __future__ import annotations

import datetime as dt
from typing import TypedDict

from batchscraper.exceptions import ErrorInfo
from batchscraper.jsontypes import Document, JSONValue


class ScreenshotRef(TypedDict):
    """Where an item's page screenshot is: a GridFS file in the ``screenshots`` bucket."""

    gridfs_id: str
    bucket: str
    bytes: int


class Lease(TypedDict):
    """A worker's hold on an item (``lease`` on a leased or running item)."""

    worker: str
    token: str
    until: dt.datetime


class ItemChange(TypedDict, total=False):
    """How an item differs from the item it is compared with (``compare_to``)."""

    status: str  # new, changed, unchanged, gone, failed_now, recovered
    fields: dict[str, Document]  # changed fields: old and new (or their sizes)


class ItemDocument(TypedDict, total=False):
    """One item (``items``): its input, its status, and its record once it ended."""

    _id: str  # batch id and input position
    batch_id: str
    index: int
    url: str
    status: str  # store.transitions.ItemStatus
    attempts: int
    request: Document  # the URL's own options
    lease: Lease | None
    error: ErrorInfo | None
    data: JSONValue
    content: dict[str, str]  # by format
    final_url: str | None
    http_status: int | None
    render_mode: str
    screenshot: ScreenshotRef
    change: ItemChange | None
    updated_at: dt.datetime
    finished_at: dt.datetime
