"""API keys: who is calling.

``BATCH_API_KEYS`` holds ``key:owner`` pairs separated by commas, e.g.
``sk_live_1a2b:alice,sk_live_3c4d:bob,sk_live_5e6f:alice`` (a rotated key
keeps its owner). A batch belongs to the owner of the key that submitted it;
other owners get 403. With no keys configured the API is open (loopback
only, see :func:`batchscraper.api.config.check_exposure`) and every caller
sees every batch.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from dataclasses import dataclass
from typing import Any

from batchscraper.exceptions import AuthenticationError, ForbiddenError

KEY_HEADER = b"x-api-key"
BEARER = "bearer "
BASIC = b"basic "


@dataclass(frozen=True)
class Caller:
    """An authenticated caller; ``owner`` is None when the API is open."""

    owner: str | None

    def check_access(self, batch: dict[str, Any]) -> None:
        """403 unless the batch is this caller's (any batch when the API is open)."""
        if self.owner is not None and batch.get("owner") != self.owner:
            raise ForbiddenError(f"batch {batch['_id']} belongs to another API key")


class ApiKeys:
    """The configured keys and their owners."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys

    @classmethod
    def from_setting(cls, value: str | None) -> ApiKeys:
        """Parse ``key:owner,key:owner``; ValueError on an entry without both parts."""
        keys: dict[str, str] = {}
        for entry in (value or "").split(","):
            entry = entry.strip()
            if not entry:
                continue
            key, _, owner = entry.rpartition(":")
            if not key.strip() or not owner.strip():
                raise ValueError(f"BATCH_API_KEYS: {entry[:4]}... is not key:owner")
            keys[key.strip()] = owner.strip()
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def identify(self, request: Any) -> Caller:
        """The caller behind ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; else 401."""
        if not self.keys:
            return Caller(owner=None)
        offered = _offered_key(request)
        if offered is None:
            raise AuthenticationError(
                "missing API key: send Authorization: Bearer <key> or X-API-Key: <key>"
            )
        owner = None
        for key, key_owner in self.keys.items():  # compare with every key: constant time
            if hmac.compare_digest(key.encode(), offered.encode()):
                owner = key_owner
        if owner is None:
            raise AuthenticationError("invalid API key")
        return Caller(owner=owner)


def _offered_key(request: Any) -> str | None:
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
    def from_config(cls, scrapyd_config: Any) -> ScrapydAuth:
        return cls(
            username=os.getenv("SCRAPYD_USERNAME") or scrapyd_config.get("username", ""),
            password=os.getenv("SCRAPYD_PASSWORD") or scrapyd_config.get("password", ""),
        )

    @property
    def enabled(self) -> bool:
        return bool(self.username and self.password)

    def accepts(self, request: Any) -> bool:
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
