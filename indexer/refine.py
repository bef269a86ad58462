"""Re-ranking a compressed index's candidates with the library's full-precision vectors.

Under a tight `--max-memory` the index holds coarse codes (OPQ+PQ, SQ4) whose scores miss true
neighbours. A refined search asks the index for REFINE_FACTOR x k candidates and orders them by
their exact inner product with the vectors kept on disk (indexer.full_vectors): the answer of a
compressed index, the precision of the stored vectors (faiss's IndexRefine does the same with a
second index in memory; here the second copy stays on disk and ~k x 8 rows are read a query).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

REFINE_FACTOR = 8
REFINED_CODES = ("PQ", "SQ4", "SQ6")  # codes lossy enough that their order misses neighbours


def wants_refine(factory: str) -> bool:
    code = factory.split(",")[-1]
    return any(code.startswith(c) for c in REFINED_CODES)


class Refiner:
    """Exact scores for ids, read from a FullVectors' committed rows (each id's last row)."""

    def __init__(self, full: Any) -> None:
        self.full = full
        self.width = full.d * full.dtype.itemsize
        self.ids = self.rows = np.zeros(0, np.int64)
        self._fd: int | None = None

    def _open(self) -> None:
        """The id -> row map (16 bytes an item; ~1 s at 10M, so at the first search, not at open)."""
        ids = self.full.ids()
        rows = np.flatnonzero(self.full.last_rows(ids))  # an id written twice: its latest row
        order = np.argsort(ids[rows])
        self.ids, self.rows = ids[rows][order], rows[order]
        self._fd = os.open(self.full.vec_path, os.O_RDONLY)

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, float32 rows): which of `ids` have a row, and those rows."""
        if self._fd is None:
            self._open()
        at = np.minimum(np.searchsorted(self.ids, ids), max(len(self.ids) - 1, 0))
        found = (self.ids[at] == ids) if len(self.ids) else np.zeros(len(ids), bool)
        out = np.empty((int(found.sum()), self.full.d), self.full.dtype)
        for j, row in enumerate(self.rows[at[found]]):
            out[j] = np.frombuffer(os.pread(self._fd, self.width, int(row) * self.width), self.full.dtype)
        return found, out.astype(np.float32)

    def rerank(self, xq: np.ndarray, I: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best k of each query's candidates `I` (-1: none) by exact inner product."""
        D_out = np.full((len(xq), k), -np.inf, np.float32)
        I_out = np.full((len(xq), k), -1, np.int64)
        for q in range(len(xq)):
            cand = I[q][I[q] >= 0]
            found, vecs = self.vectors(cand)
            cand = cand[found]  # a candidate without a kept row (none in a complete store) drops out
            scores = vecs @ xq[q]
            best = np.argsort(-scores, kind="stable")[:k]
            D_out[q, :len(best)], I_out[q, :len(best)] = scores[best], cand[best]
        return D_out, I_out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    __del__ = close  # a reader that reopens a changed library drops its old index and this with it
