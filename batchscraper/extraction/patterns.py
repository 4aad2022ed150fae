"""Schema ``pattern``s compiled by RE2, for everything that matches them.

A user's pattern meets values from pages anyone can write. Python's ``re``
backtracks (``^([a-z]+\\s?)+$`` against 45 characters takes hours, holding
the GIL); RE2 matches in time linear in the input and refuses what needs
backtracking (backreferences, lookaround), so such patterns are refused at
submit instead.
"""

from __future__ import annotations

import functools
import re
from typing import Protocol

import re2

MAX_CACHED_PATTERNS = 1024
#: ECMA-262 ``\uXXXX`` (not itself escaped), which RE2 spells ``\x{XXXX}``.
_ECMA_UNICODE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u([0-9A-Fa-f]{4})")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported to the user, not to stderr

PatternError = re2.error


class CompiledPattern(Protocol):
    """What is used of an RE2 pattern (the ``re2`` package has no type hints)."""

    def search(self, text: str) -> object | None:
        """The first match in ``text`` (an RE2 match object), or None."""


@functools.lru_cache(maxsize=MAX_CACHED_PATTERNS)
def compile_pattern(pattern: str) -> CompiledPattern:
    """``pattern`` compiled by RE2; raises :data:`PatternError` for what RE2 cannot run."""
    return re2.compile(_ECMA_UNICODE_ESCAPE.sub(r"\1\\x{\2}", pattern), options=_RE2_OPTIONS)


def pattern_problem(pattern: str) -> str | None:
    """Why RE2 cannot compile ``pattern``, or None when it can."""
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        return f"{reason}; patterns use RE2 syntax (no backreferences or lookaround)"
    return None
