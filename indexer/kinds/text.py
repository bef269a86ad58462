"""Text documents: .txt, .md, .markdown, .rst, .text in UTF-8, up to 16 MiB.

Split with the text encoder's own tokenizer into chunks of whole words that fit its context,
preferring sentence ends; each chunk is an item with its snippet and character offsets,
embedded by the text encoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator

from indexer.kinds.base import DecodeContext, MediaKind, Segment, read_failure
from retrieval.errors import DecodeError

MAX_TEXT_BYTES = 16 * 1024 * 1024
_WORD = re.compile(r"\S+")
_SENTENCE_END = (".", "!", "?", ":", ";")


def read_text(path: str) -> str:
    """UTF-8 text (BOM tolerated); binary or undecodable files are refused with a reason."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT_BYTES + 1)
    except OSError as e:
        raise read_failure(e) from None
    if len(data) > MAX_TEXT_BYTES:
        raise DecodeError(f"text file larger than {MAX_TEXT_BYTES // (1024 * 1024)} MiB")
    if b"\x00" in data[:8192]:
        raise DecodeError("binary file, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DecodeError(f"not UTF-8 text (invalid byte at offset {e.start})") from None
    if not text.strip():
        raise DecodeError("no text in file")
    return text


@dataclass(frozen=True)
class Chunk:
    index: int
    char_start: int
    char_end: int
    text: str


def chunk_text(text: str, count_tokens: Callable[[str], int], context_length: int) -> list[Chunk]:
    """Split into consecutive chunks of whole words, each within `context_length` tokens.

    Token counts come from the encoder's own tokenizer. Per-word counts give a fast estimate,
    each chunk is then checked as a whole (tokenizers are not always additive) and trimmed.
    A chunk that fills up breaks after the last sentence end in its second half, if any.
    """
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    specials = count_tokens("")
    cost = [max(1, count_tokens(text[s:e]) - specials) for s, e in words]
    chunks: list[Chunk] = []
    i = 0
    while i < len(words):
        j, used = i, specials
        while j < len(words) and used + cost[j] <= context_length:
            used += cost[j]
            j += 1
        j = max(j, i + 1)  # a single word longer than the context still forms a chunk
        while j > i + 1 and count_tokens(text[words[i][0] : words[j - 1][1]]) > context_length:
            j -= 1
        if j < len(words):
            for b in range(j - 1, i + (j - i) // 2, -1):
                if text[words[b][1] - 1] in _SENTENCE_END:
                    j = b + 1
                    break
        start, end = words[i][0], words[j - 1][1]
        chunks.append(Chunk(len(chunks), start, end, text[start:end]))
        i = j
    return chunks


class TextKind(MediaKind):
    name = "text"
    label = "Text"
    noun = "text"
    extensions = frozenset({".txt", ".md", ".markdown", ".rst", ".text"})
    location = ("chunk", "snippet", "char_start", "char_end")
    view = "snippet"
    # Never anything a browser would run: an indexed .html or .svg must not execute in the page's origin.
    mime = "text/plain; charset=utf-8"

    def decode(self, path: str, ctx: DecodeContext) -> Iterator[Segment]:
        for c in chunk_text(read_text(path), ctx.count_tokens, ctx.context_length):
            yield Segment(c.text, embedder="text", chunk=c.index, char_start=c.char_start, char_end=c.char_end, snippet=c.text)
