"""Vector search joined with the catalog: query vector -> FAISS -> drop -1 -> SQL -> [Hit]."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from indexer.catalog import File, Item
from indexer.vectors import VectorIndex

MODALITIES = ("image", "text", "audio")
_SQL_CHUNK = 900  # stay below SQLite's bound-parameter limit on old builds


@dataclass
class Hit:
    """One search result. `score` is the cosine similarity to the query vector; `calibrated`
    (only when modalities are mixed) is the score that ranked it among other modalities.
    Text hits carry chunk/snippet/char offsets; audio hits the window's `start`/`end` seconds."""

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
            hits.append(
                Hit(
                    path=path,
                    modality=item.modality,
                    score=score,
                    item_id=item.id,
                    chunk=item.chunk if item.modality != "image" else None,
                    snippet=item.snippet,
                    char_start=item.char_start,
                    char_end=item.char_end,
                    start=item.start,
                    end=item.end,
                )
            )
            if len(hits) == k:
                return hits
        if want >= vectors.ntotal:
            return hits
        want = min(vectors.ntotal, want * 4)
