"""xmr: local-first cross-modal retrieval.

`retrieval.Library` is the Python API; heavy modules (torch, open_clip, faiss) load only when
an encoder or index is actually used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrieval.errors import XmrError

__all__ = ["Library", "Hit", "Query", "XmrError"]

if TYPE_CHECKING:  # pragma: no cover
    from retrieval.library import Library
    from retrieval.query import Query
    from retrieval.search import Hit


def __getattr__(name: str) -> Any:
    # Lazy so that `import retrieval` (and `xmr --help`) stays cheap.
    if name == "Library":
        from retrieval.library import Library

        return Library
    if name == "Hit":
        from retrieval.search import Hit

        return Hit
    if name == "Query":
        from retrieval.query import Query

        return Query
    raise AttributeError(name)
