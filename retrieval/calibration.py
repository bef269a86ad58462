"""Scores of different modalities made comparable (README: "Mixing modalities").

Raw cosines are not comparable across modalities (CLIP text->text runs far higher than
text->image, bridged sounds sit elsewhere again); "how far above this modality's usual score
for this query" is. So a hit's calibrated score is the z-score of its cosine among the cosines
of the same query to a fixed random sample (seeded) of up to 512 items of its channel: its modality and
the embedder that made it (a video's shots and sound windows are two channels). See `calibrate`
for channels too small to have a spread of their own.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.catalog import Item
from indexer.vectors import VectorIndex

Channel = tuple[str, str]  # (modality, embedder): items whose scores share one distribution

SAMPLE = 512
MIN_SAMPLE = 8  # a modality with fewer items has no spread of its own: it borrows one


class Calibrator:
    """Keeps each modality's sample (ids and vectors) until the index changes."""

    def __init__(self) -> None:
        self._cache: dict[Channel, tuple[np.ndarray, np.ndarray]] = {}
        self._of: tuple[VectorIndex, int] | None = None

    def sample(self, s: Session, vecs: VectorIndex, channel: Channel) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of up to SAMPLE random items of `channel` that this index holds."""
        if self._of != (vecs, vecs.version):  # keyed on the index's contents, not just its size
            self._cache, self._of = {}, (vecs, vecs.version)
        got = self._cache.get(channel)
        if got is None:
            modality, embedder = channel
            stmt = select(Item.id).where(Item.modality == modality, Item.embedder == embedder).order_by(Item.id)
            # A long-lived reader's index can be older than the rows it reads (a writer has
            # committed since): sample only what this index holds. The sample is drawn with a
            # fixed seed: the same library gives the same scores in every process (a server, the
            # CLI, a shard's actor), not a new draw each time the index is opened.
            ids = vecs.present(np.fromiter(s.scalars(stmt), np.int64))
            if len(ids) > SAMPLE:
                ids = np.sort(np.random.default_rng(0).choice(ids, SAMPLE, replace=False))
            got = self._cache[channel] = (ids, vecs.reconstruct_many(ids))
        return got

    def calibrate(self, s: Session, vecs: VectorIndex, vector: np.ndarray,
                  scores: dict[Channel, Sequence[float]]) -> dict[Channel, list[float]]:
        """Calibrated scores for each channel's cosines (`scores[channel]`) to the query `vector`.

        A modality with at least MIN_SAMPLE items: (score - mean) / sd of the query's cosines to
        its sample. A smaller one is centred on the mean of its own few items and takes its
        spread from the other modalities (their median sd for this query): its best item is not
        ranked first merely because it was compared with a library of another kind.
        """
        stats: dict[Channel, tuple[float, float, int]] = {}
        for m in scores:
            _, sample = self.sample(s, vecs, m)
            sims = sample @ vector if len(sample) else np.zeros(0, np.float32)
            stats[m] = (float(sims.mean()) if len(sims) else 0.0, float(sims.std()) if len(sims) > 1 else 0.0, len(sims))
        spreads = [sd for _, sd, n in stats.values() if n >= MIN_SAMPLE]
        borrowed = float(np.median(spreads)) if spreads else max((sd for _, sd, _ in stats.values()), default=0.0)
        out: dict[Channel, list[float]] = {}
        for m, values in scores.items():
            mu, sd, n = stats[m]
            if n == 0:
                out[m] = list(values)
                continue
            sd = max(sd if n >= MIN_SAMPLE else borrowed, 1e-3)
            out[m] = [(v - mu) / sd for v in values]
        return out
