"""Vector search joined with the catalog: query vector -> FAISS -> drop -1 -> SQL -> [Hit].

With more than one modality in a library and no `--type`, each modality is searched on its
own and the lists are merged by calibrated score (retrieval.calibration).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from indexer.audio_bridge import AudioBridge
from indexer.catalog import File, Item
from indexer.kinds import get_kind, kind_names
from indexer.models import Models
from indexer.store import Store
from indexer.vectors import VectorIndex
from retrieval.calibration import Calibrator
from retrieval.errors import NotFoundError, UsageError
from retrieval.query import Query

_SQL_CHUNK = 900  # stay below SQLite's bound-parameter limit on old builds


def modalities() -> tuple[str, ...]:
    """What `--type` accepts besides 'any': the registered kinds."""
    return kind_names()


@dataclass
class Hit:
    """One search result. `score` is the cosine similarity to the query vector; `calibrated`
    (only when modalities are mixed) is the score that ranked it among other modalities.
    Each kind fills its location fields: text hits chunk/snippet/char offsets, audio hits the
    window's chunk and `start`/`end` seconds (see indexer.kinds)."""

    path: str
    modality: str
    score: float
    item_id: int
    chunk: int | None = None
    snippet: str | None = None
    char_start: int | None = None
    char_end: int | None = None
    start: float | None = None
    end: float | None = None
    calibrated: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def location(item: Item) -> dict[str, Any]:
    """The location fields a hit of this item's kind carries."""
    try:
        return get_kind(item.modality).hit_fields(item)
    except KeyError:  # a kind this xmr does not know (a newer xmr wrote it): show what there is
        return {"chunk": item.chunk, "snippet": item.snippet, "start": item.start, "end": item.end}


def _rows(session: Session, ids: Iterable[int]) -> dict[int, tuple[Item, str]]:
    ids = list(ids)
    out: dict[int, tuple[Item, str]] = {}
    for i in range(0, len(ids), _SQL_CHUNK):
        stmt = select(Item, File.path).join(File).where(Item.id.in_(ids[i : i + _SQL_CHUNK]))
        for item, path in session.execute(stmt):
            out[item.id] = (item, path)
    return out


def search_vectors(
    session: Session, vectors: VectorIndex, xq: np.ndarray, k: int, modality: str | None = None
) -> list[Hit]:
    """Top-k items for one query vector, optionally of one modality.

    A modality filter must not shrink k: ask FAISS for more neighbours until k of the wanted
    modality are found or the whole index has been ranked.
    """
    if k <= 0 or vectors.ntotal == 0:
        return []
    want = k if modality is None else min(vectors.ntotal, k * 4)
    nprobe = None
    if modality is not None and vectors.is_ivf:
        # An approximate index only looks in a few lists; a rare modality has few items there.
        # Probe proportionally more lists so that k of them are still found.
        n_mod = session.scalar(select(func.count(Item.id)).where(Item.modality == modality)) or 0
        if n_mod == 0:
            return []
        nprobe = min(vectors.nlist, vectors.nprobe * -(-vectors.ntotal // n_mod))
    while True:
        D, I = vectors.search(xq.reshape(1, -1), want, nprobe=nprobe)
        pairs = [(int(i), float(d)) for d, i in zip(D[0], I[0]) if i != -1]
        rows = _rows(session, [i for i, _ in pairs])
        hits = []
        for item_id, score in pairs:
            row = rows.get(item_id)
            if row is None:  # a vector whose row is gone (crash before commit): never shown
                continue
            item, path = row
            if modality is not None and item.modality != modality:
                continue
            hits.append(Hit(path=path, modality=item.modality, score=score, item_id=item.id, **location(item)))
            if len(hits) == k:
                return hits
        if want >= vectors.ntotal:
            return hits
        want = min(vectors.ntotal, want * 4)


class Searcher:
    """The query side of one library view: queries, items by id, more like this."""

    def __init__(self, store: Store, models: Models, bridge: AudioBridge) -> None:
        self.store, self.models, self.bridge = store, models, bridge
        self.calibrator = Calibrator()

    def search(self, query: Query | str | None = None, *, k: int = 10, modality: str | None = None,
               vector: np.ndarray | None = None) -> list[Hit]:
        """Nearest items to a Query (or plain text, or a ready unit vector), best first."""
        if k <= 0:
            raise UsageError(f"k must be positive, got {k}")
        if modality in (None, "any"):
            modality = None
        elif modality not in modalities():
            raise UsageError(f"unknown type {modality!r}; choose from: {', '.join(modalities())}, any")
        if vector is None:
            q = Query(texts=[query]) if isinstance(query, str) else query
            if q is None:
                raise UsageError("nothing to search for")
            q.validate()
            vecs = self.store.vectors()
            if vecs is None or vecs.ntotal == 0:
                return []
            vector = q.embed(lambda: self.models.encoder, audio=self.bridge.embed_file)
        vecs = self.store.vectors()
        if vecs is None:
            return []
        with self.store.Session() as s:
            present = list(s.scalars(select(Item.modality).distinct()))
            if modality is not None or len(present) < 2:
                return search_vectors(s, vecs, vector, k, modality)
            hits: list[Hit] = []
            for m in sorted(present):
                found = search_vectors(s, vecs, vector, k, m)
                for h, c in zip(found, self.calibrator.calibrate(s, vecs, m, vector, [h.score for h in found])):
                    h.calibrated = c
                hits += found
        hits.sort(key=lambda h: h.calibrated if h.calibrated is not None else h.score, reverse=True)
        return hits[:k]

    def item(self, item_id: int) -> dict[str, Any]:
        """One item with its file: what a result links to. NotFoundError when it is not there."""
        with self.store.Session() as s:
            row = s.execute(select(Item, File).join(File).where(Item.id == int(item_id))).first()
            if row is None:
                raise NotFoundError(f"no item {item_id} in this library")
            item, f = row
            return {
                "item_id": item.id, "path": f.path, "modality": item.modality,
                "chunk": None, "snippet": item.snippet, "char_start": item.char_start, "char_end": item.char_end,
                "start": item.start, "end": item.end, **location(item),
                "file_id": f.id, "size": f.size, "mtime_ns": f.mtime_ns, "phash": f.phash,
                "indexed_at": f.indexed_at, "file_items": len(f.items),
            }

    def item_vector(self, item_id: int) -> np.ndarray:
        """An item's stored vector, unit length (NotFoundError when the index lacks it)."""
        vecs = self.store.vectors()
        if vecs is None or not np.isin(np.int64(item_id), vecs.ids()):
            raise NotFoundError(f"item {item_id} has no vector in the loaded index (yet); try again in a moment")
        vector = np.asarray(vecs.reconstruct(int(item_id)), np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def similar(self, item_id: int, *, k: int = 10, modality: str | None = None) -> list[Hit]:
        """More like this: the nearest items to a library item's own vector, other files only
        (the item's neighbouring windows or chunks would crowd out everything else)."""
        info = self.item(item_id)
        hits = self.search(k=k + info["file_items"], modality=modality, vector=self.item_vector(item_id))
        return [h for h in hits if h.path != info["path"]][:k]
