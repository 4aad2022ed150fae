"""The shapes of what the store keeps: parts of item and batch documents.

Whole documents are read as :data:`~batchscraper.jsontypes.Document` (their fields
depend on the batch's options and on how far an item got); the parts with a fixed
set of keys are typed here.
"""

from __future__ import annotations

import datetime as dt
from typing import TypedDict


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
