"""API keys: who is calling, and whose batches they see.

``BATCH_API_KEYS`` holds ``key:owner`` entries separated by commas, e.g.
``sk_live_1a2b:alice,sk_live_3c4d:bob,sk_live_5e6f:alice`` (a rotated key
keeps its owner); ``key:owner:admin`` makes a key an admin key. A batch (or
schedule) belongs to the owner of the key that submitted it; one stored
without an owner (by ``scrapy crawl``, or before keys were turned on) belongs
to ``BATCH_API_DEFAULT_OWNER``. Other owners get 403 ``FORBIDDEN``; an admin
key sees and manages every owner's batches and schedules. With no keys
configured the API is open (loopback only, see
:func:`batchscraper.api.config.check_exposure`) and every caller sees every
batch.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scrapy.settings import BaseSettings

from batchscraper.exceptions import AdminRequiredError, AuthenticationError, ForbiddenError
from batchscraper.jsontypes import Document, Query

if TYPE_CHECKING:
    from scrapyd.config import Config
    from twisted.web.server import Request

KEY_HEADER = b"x-api-key"
BEARER = "bearer "
BASIC = b"basic "


ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller; ``owner`` is None when the API is open.

    ``default_owner``: whose the batches and schedules stored without an owner are.
    """

    owner: str | None
    admin: bool = False
    default_owner: str | None = None

    @property
    def sees_all(self) -> bool:
        """An admin key, or the open API: every owner's batches."""
        return self.owner is None or self.admin

    def owns(self, doc: Mapping[str, object]) -> bool:
        """Whether this caller may read and change ``doc`` (a batch or a schedule)."""
        return self.sees_all or (doc.get("owner") or self.default_owner) == self.owner

    def check_access(self, batch: Document) -> None:
        """403 unless the batch is this caller's (any batch for admins and the open API)."""
        if not self.owns(batch):
            raise ForbiddenError(f"batch {batch['_id']} belongs to another API key")

    def owner_query(self, owner: str | None = None) -> Query:
        """The MongoDB filter of the caller's documents (``owner``'s: an admin's choice).

        403 ``ADMIN_REQUIRED`` when a caller that is not an admin asks for another owner's.
        """
        if owner is not None and not self.sees_all and owner != self.owner:
            raise AdminRequiredError(
                f"owner={owner[:80]}: only an admin key lists another owner's batches")
        wanted = owner if owner is not None else None if self.sees_all else self.owner
        if wanted is None:
            return {}
        if wanted == self.default_owner:  # and those stored without an owner
            return {"owner": {"$in": [wanted, None]}}
        return {"owner": wanted}


class ApiKeys:
    """The configured keys, their owners and roles."""

    def __init__(
        self, keys: dict[str, str], admins: frozenset[str] = frozenset(),
        default_owner: str | None = None,
    ) -> None:
        self.keys = keys
        self.admins = admins  # the admin keys
        self.default_owner = default_owner

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> ApiKeys:
        """``BATCH_API_KEYS`` (``key:owner[:admin],...``) and ``BATCH_API_DEFAULT_OWNER``.

        ValueError on an entry that is neither form, or a default owner no key has.
        """
        keys: dict[str, str] = {}
        admins: set[str] = set()
        for entry in (settings.get("BATCH_API_KEYS") or "").split(","):
            entry = entry.strip()
            if not entry:
                continue
            parts = [part.strip() for part in entry.split(":")]
            if len(parts) < 2 or not all(parts[:2]) or parts[2:] not in ([], [ADMIN_ROLE]):
                raise ValueError(
                    f"BATCH_API_KEYS: {entry[:4]}... is not key:owner or key:owner:admin")
            keys[parts[0]] = parts[1]
            if len(parts) == 3:
                admins.add(parts[0])
        default_owner = (settings.get("BATCH_API_DEFAULT_OWNER") or "").strip() or None
        if not keys:  # the open API: every batch is everyone's
            return cls({})
        if default_owner is not None and default_owner not in keys.values():
            raise ValueError(f"BATCH_API_DEFAULT_OWNER: no key of BATCH_API_KEYS has owner "
                             f"{default_owner!r}")
        return cls(keys, frozenset(admins), default_owner)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def identify(self, request: Request) -> Caller:
        """The caller behind ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; else 401."""
        if not self.keys:
            return Caller(owner=None)
        offered = _offered_key(request)
        if offered is None:
            raise AuthenticationError(
                "missing API key: send Authorization: Bearer <key> or X-API-Key: <key>"
            )
        found = None
        for key in self.keys:  # compare with every key: constant time
            if hmac.compare_digest(key.encode(), offered.encode()):
                found = key
        if found is None:
            raise AuthenticationError("invalid API key")
        return Caller(owner=self.keys[found], admin=found in self.admins,
                      default_owner=self.default_owner)


def _offered_key(request: Request) -> str | None:
    header = request.getHeader(b"authorization")
    if header:
        text = header.decode("latin-1")
        if text.lower().startswith(BEARER):
            return text[len(BEARER) :].strip() or None
    key = request.getHeader(KEY_HEADER)
    return key.decode("latin-1").strip() or None if key else None


@dataclass(frozen=True)
class ScrapydAuth:
    """Scrapyd's basic auth (``SCRAPYD_USERNAME``/``SCRAPYD_PASSWORD`` or scrapyd.conf).

    Read the way :func:`scrapyd.basicauth.wrap_resource` reads it, so the
    front door (see :class:`batchscraper.api.gate.GatedRequest`) asks for the
    same credentials as Scrapyd's own guard behind it.
    """

    username: str
    password: str

    @classmethod
    def from_config(cls, scrapyd_config: Config) -> ScrapydAuth:
        return cls(
            username=os.getenv("SCRAPYD_USERNAME") or scrapyd_config.get("username", ""),
            password=os.getenv("SCRAPYD_PASSWORD") or scrapyd_config.get("password", ""),
        )

    @property
    def enabled(self) -> bool:
        return bool(self.username and self.password)

    def accepts(self, request: Request) -> bool:
        """Whether ``Authorization: Basic`` holds the configured credentials (constant time)."""
        header = request.getHeader(b"authorization") or b""
        if not header.lower().startswith(BASIC):
            return False
        try:
            offered = base64.b64decode(header[len(BASIC) :].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        expected = f"{self.username}:{self.password}".encode()
        return hmac.compare_digest(offered, expected)
