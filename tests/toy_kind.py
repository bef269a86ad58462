"""A toy kind of file for the tests of the media-kind contract: a table (.csv) whose rows are
items, each embedded by the text encoder, located by row number and character offsets.

It lives outside xmr on purpose: registering it is all it takes for xmr to scan, index, search
(`--type table`), check and serve such files (tests/test_kinds.py shows each).
"""

from __future__ import annotations

from typing import Iterator

from indexer.kinds import MediaKind, Segment, register_kind
from indexer.kinds.base import DecodeContext
from indexer.kinds.text import read_text
from retrieval.errors import DecodeError


class TableKind(MediaKind):
    name = "table"
    label = "Tables"
    noun = "row"
    extensions = frozenset({".csv"})
    location = ("chunk", "snippet", "char_start", "char_end")
    view = "snippet"
    mime = "text/plain; charset=utf-8"

    def sniff(self, head: bytes, ext: str) -> bool:
        return head.startswith(b"#table\n")  # a table by content, whatever its name

    def decode(self, path: str, ctx: DecodeContext) -> Iterator[Segment]:
        text = read_text(path)
        offset, row = 0, 0
        for line in text.splitlines(keepends=True):
            start, cells = offset, line.strip()
            offset += len(line)
            if not cells or cells.startswith("#"):
                continue
            if ctx.count_tokens(cells.replace(",", " ")) > ctx.context_length:
                raise DecodeError(f"row {row} is longer than the text encoder's context")
            yield Segment(cells.replace(",", " "), embedder="text", chunk=row, snippet=cells,
                          char_start=start, char_end=start + len(line.rstrip("\r\n")))
            row += 1


def register() -> TableKind:
    return register_kind(TableKind())  # type: ignore[return-value]
