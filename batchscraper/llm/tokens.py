"""Token counting and chunking of page markdown.

Counts use the ``bpe-openai`` package, which ships the ``cl100k_base`` and
``o200k_base`` BPE files (tiktoken cannot download its files here). It loads
its tables on import (~0.6 s), so it is imported on first use, not with the
project.
"""

from __future__ import annotations

import functools
import importlib
import logging
import warnings
from collections.abc import Sequence
from typing import Protocol, cast

logger = logging.getLogger(__name__)


class Encoding(Protocol):
    """What is used of a bpe_openai tokenizer."""

    def encode_ordinary(self, text: str) -> Sequence[int]: ...

    def decode(self, tokens: Sequence[int]) -> str: ...


@functools.lru_cache(maxsize=4)
def encoding(name: str = "cl100k_base") -> Encoding:
    """The tokenizer ``name``, loaded once per process."""
    with warnings.catch_warnings():
        # bpe-openai 0.1.4 reads its data files with the deprecated importlib.resources API
        warnings.filterwarnings("ignore", "open_binary is deprecated", DeprecationWarning)
        bpe_openai = importlib.import_module("bpe_openai")
    return cast(Encoding, bpe_openai.get_encoding(name))


def count_tokens(text: str, encoding_name: str = "cl100k_base") -> int:
    """Tokens in ``text`` (special-token text counted as plain text)."""
    if not text:
        return 0
    return len(encoding(encoding_name).encode_ordinary(text))


def chunk_text(
    text: str, max_tokens: int, overlap: int, encoding_name: str = "cl100k_base"
) -> list[str]:
    """Split ``text`` into pieces of at most ``max_tokens`` tokens, ``overlap`` tokens shared.

    Pieces end on line boundaries where a line fits; a line longer than a
    piece is cut on token boundaries. Nothing is dropped: the pieces, minus
    their overlaps, cover the whole text in order.
    """
    enc = encoding(encoding_name)
    if max_tokens <= 0 or count_tokens(text, encoding_name) <= max_tokens:
        return [text]
    overlap = max(0, min(overlap, max_tokens // 2))
    lines: list[tuple[str, int]] = []
    for line in text.split("\n"):
        tokens = enc.encode_ordinary(line + "\n")
        if len(tokens) <= max_tokens - overlap:
            lines.append((line + "\n", len(tokens)))
            continue
        step = max_tokens - overlap
        for start in range(0, len(tokens), step):
            piece = tokens[start:start + step]
            lines.append((enc.decode(piece), len(piece)))
    chunks: list[str] = []
    current: list[tuple[str, int]] = []
    size = 0
    for line, tokens_in_line in lines:
        if current and size + tokens_in_line > max_tokens:
            chunks.append("".join(part for part, _ in current))
            current, size = _tail(current, overlap)
        current.append((line, tokens_in_line))
        size += tokens_in_line
    if current:
        chunks.append("".join(part for part, _ in current))
    return [chunk.rstrip("\n") for chunk in chunks]


def _tail(lines: list[tuple[str, int]], overlap: int) -> tuple[list[tuple[str, int]], int]:
    """The last lines of a chunk, up to ``overlap`` tokens, to start the next one with."""
    kept: list[tuple[str, int]] = []
    size = 0
    for line, tokens in reversed(lines):
        if size + tokens > overlap:
            break
        kept.insert(0, (line, tokens))
        size += tokens
    return kept, size
