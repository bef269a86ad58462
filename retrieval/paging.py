"""Pages of one result list: what a query was (its key), and the ranked candidates kept for its
next pages, so that scrolling on never encodes the query again nor searches again while the
list already computed covers the page.

A list is kept with the version of what it was computed from (the index, the tags); anything
newer, and it is computed again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable

MEMO_LISTS = 32  # result lists kept (each at most MAX_RESULTS small tuples)
MEMO_VECTORS = 256  # query vectors kept


@dataclass
class Cand:
    """A ranked candidate before its row is read: enough to rank, cut, fuse and page."""

    item_id: int
    score: float  # what orders the list (retrieval.hits.Hit.score)
    cosine: float | None = None
    calibrated: float | None = None
    words: float | None = None


@dataclass
class RankedList:
    cands: list[Cand] = field(default_factory=list)
    complete: bool = False  # nothing beyond what it holds (the search ran dry, or a cutoff ended it)
    length: int = 0  # how long it was asked to be


def _file_digest(path: str) -> str:
    from retrieval.encoders.clip import file_sha256

    try:
        return file_sha256(Path(path))
    except OSError:
        return f"unreadable:{path}"  # the query itself will say what is wrong with it


def query_key(query: Any) -> Hashable:
    """A key naming what a Query asks (files by their content: an upload saved anew under
    another temporary name is the same query)."""
    if isinstance(query, str):
        return ("text", query)
    return (
        tuple(query.texts), tuple(query.negatives), query.media_weight, query.negative_weight,
        tuple(_file_digest(p) for p in query.images), tuple(_file_digest(p) for p in query.audios),
        tuple(_file_digest(p) for p in query.videos),
        tuple(hashlib.sha256(memoryview(v).tobytes()).hexdigest() for v in query.vectors),
    )


class Memo:
    """Query vectors and result lists, least recently used dropped first; thread-safe (the
    server answers pages from several threads)."""

    def __init__(self) -> None:
        self._vectors: OrderedDict[Hashable, Any] = OrderedDict()
        self._lists: OrderedDict[Hashable, tuple[Hashable, RankedList]] = OrderedDict()
        self._lock = threading.Lock()

    def vector(self, key: Hashable) -> Any:
        with self._lock:
            v = self._vectors.get(key)
            if v is not None:
                self._vectors.move_to_end(key)
            return v

    def keep_vector(self, key: Hashable, vector: Any) -> None:
        with self._lock:
            self._vectors[key] = vector
            while len(self._vectors) > MEMO_VECTORS:
                self._vectors.popitem(last=False)

    def ranked(self, key: Hashable, version: Hashable) -> RankedList | None:
        with self._lock:
            got = self._lists.get(key)
            if got is None or got[0] != version:
                return None
            self._lists.move_to_end(key)
            return got[1]

    def keep_ranked(self, key: Hashable, version: Hashable, ranked: RankedList) -> None:
        with self._lock:
            self._lists[key] = (version, ranked)
            while len(self._lists) > MEMO_LISTS:
                self._lists.popitem(last=False)


def extend(old: RankedList | None, new: RankedList) -> RankedList:
    """A longer computation of a list continues the pages already shown: what they showed
    stays first, in its order, and the rest follows without repeats."""
    if old is None:
        return new
    seen = {c.item_id for c in old.cands}
    return RankedList(old.cands + [c for c in new.cands if c.item_id not in seen], new.complete, new.length)
