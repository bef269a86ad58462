"""Scores of different modalities made comparable (README: "Mixing modalities").

Raw cosines are not comparable across modalities (CLIP text->text runs far higher than
text->image, bridged sounds sit elsewhere again); "how far above this modality's usual score
for this query" is. So a hit's calibrated score is the z-score of its cosine among the cosines
of the same query to a fixed random sample of up to 512 items of its modality.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from indexer.catalog import Item
from indexer.vectors import VectorIndex

SAMPLE = 512
MIN_SAMPLE = 8  # fewer items than this: measured against the whole library instead


class Calibrator:
    """Keeps each modality's sample (its vectors) for as long as the index size is unchanged."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    @staticmethod
    def _sample_ids(s: Session, modality: str | None) -> list[int]:
        stmt = select(Item.id).order_by(func.random()).limit(SAMPLE)
        return list(s.scalars(stmt if modality is None else stmt.where(Item.modality == modality)))

    def sample(self, s: Session, vecs: VectorIndex, modality: str, d: int) -> np.ndarray:
        key = (modality, vecs.ntotal)
        sample = self._cache.get(key)
        if sample is None:
            ids = self._sample_ids(s, modality)
            if len(ids) < MIN_SAMPLE:
                ids = self._sample_ids(s, None)
            ids_arr = np.array(ids, np.int64)
            if len(ids_arr):
                # A long-lived reader's index can be older than the rows it reads (a writer has
                # committed since): sample only what this index holds.
                ids_arr = ids_arr[np.isin(ids_arr, vecs.ids())]
            sample = vecs.reconstruct_many(ids_arr) if len(ids_arr) else np.zeros((0, d), np.float32)
            self._cache[key] = sample
        return sample

    def calibrate(self, s: Session, vecs: VectorIndex, modality: str, vector: np.ndarray,
                  scores: Sequence[float]) -> list[float]:
        """The calibrated scores of items of `modality` whose cosines to the query `vector` are `scores`."""
        sample = self.sample(s, vecs, modality, len(vector))
        if len(sample) < 2:
            return list(scores)
        sims = sample @ vector
        mu, sd = float(sims.mean()), max(float(sims.std()), 1e-3)
        return [(score - mu) / sd for score in scores]
