"""The kinds of file xmr indexes, and how a file is matched to one (see base.py for the contract).

A kind is registered here once; scanning, the pipeline, the catalog, search, the CLI and the
page take the list from `all_kinds()`. Order matters twice: content is sniffed kind by kind in
registration order (then extensions decide), and the page shows its tabs in this order.
"""

from __future__ import annotations

import os

from indexer.kinds.audio import AudioKind
from indexer.kinds.base import LOCATION_FIELDS, DecodeContext, MediaKind, Segment
from indexer.kinds.document import DocumentKind
from indexer.kinds.image import ImageKind
from indexer.kinds.text import TextKind
from indexer.kinds.video import VideoKind

__all__ = ["LOCATION_FIELDS", "DecodeContext", "MediaKind", "Segment", "all_kinds", "get_kind", "is_candidate",
           "kind_names", "register_kind", "sniff_kind", "unregister_kind"]

_KINDS: dict[str, MediaKind] = {}
_HEAD_BYTES = 64


def register_kind(kind: MediaKind) -> MediaKind:
    """Make `kind` known to xmr: scanned, indexed, searchable (`--type NAME`), shown on the page."""
    if not kind.name.isidentifier():
        raise ValueError(f"a kind's name must be an identifier, got {kind.name!r}")
    for other in _KINDS.values():
        if other.name != kind.name and other.extensions & kind.extensions:
            raise ValueError(f"{kind.name} claims extensions of {other.name}: {sorted(other.extensions & kind.extensions)}")
    _KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Forget a kind (tests that register a toy kind clean up with this)."""
    _KINDS.pop(name, None)


def all_kinds() -> list[MediaKind]:
    return list(_KINDS.values())


def kind_names() -> tuple[str, ...]:
    """The modalities of items: what `--type` accepts besides 'any'."""
    return tuple(_KINDS)


def get_kind(name: str) -> MediaKind:
    """The kind called `name` (KeyError for an unknown one)."""
    return _KINDS[name]


def is_candidate(name: str) -> bool:
    """Files worth a look: a known extension, or none (then the content decides)."""
    ext = os.path.splitext(name)[1].lower()
    return ext == "" or any(ext in k.extensions for k in _KINDS.values())


def sniff_kind(path: str) -> MediaKind | None:
    """The kind of the file at `path`: by content first, then by extension; None for anything
    else. A file named like one kind whose content is another's is that other kind."""
    ext = os.path.splitext(path)[1].lower()
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    for kind in _KINDS.values():
        if kind.sniff(head, ext):
            return _refined(kind, path)
    for kind in _KINDS.values():
        if ext in kind.extensions:
            return _refined(kind, path)  # decoding will say why it is not a readable file of this kind
    return None


def _refined(kind: MediaKind, path: str) -> MediaKind:
    """What the file really is (MediaKind.refine), as the registered kind of that name."""
    got = kind.refine(path)
    return _KINDS.get(got.name, got)


for _kind in (ImageKind(), TextKind(), AudioKind(), VideoKind(), DocumentKind()):
    register_kind(_kind)
