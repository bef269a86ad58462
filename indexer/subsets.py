"""Searching part of an index: the items of one modality, say, among all of a library's.

The work follows the subset, not the index: 5 sounds among a million pictures cost 5 inner
products, and the rows loaded afterwards are those of the subset's best k only.

- Flat index: inner products with the subset's own rows, or with all rows (then picked) when the
  subset is most of the index; several subsets at once share one product (`search_many`).
- Other indexes (IVF): exact over the subset's stored vectors when there are about as few of them
  as an unfiltered search scans (kept until the index changes); for a subset of most of the
  index, one unfiltered search asked for a few more, keeping the subset's; otherwise FAISS with an ID selector,
  probing more lists the rarer the subset is (nprobe x ntotal / subset size), so that as many of
  the subset's items are looked at as an unfiltered search looks at items.

Caches live as long as the index's contents: `clear` is called on every change.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from indexer.topk import top_k

if TYPE_CHECKING:
    from indexer.vectors import VectorIndex

SUBSET_EXACT_MAX = 20_000  # a subset this small is searched exactly from its stored vectors (<= 40 MB at d=512)


def _empty(nq: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((nq, 0), np.float32), np.zeros((nq, 0), np.int64)


class SubsetSearch:
    def __init__(self, index: VectorIndex) -> None:
        self.index = index
        self._vectors: dict[bytes, np.ndarray] = {}  # stored vectors of small subsets, by their ids
        self._selectors: dict[int, tuple[np.ndarray, Any, Any]] = {}  # (ids, selector, what it holds on to)

    def clear(self) -> None:
        self._vectors.clear()
        self._selectors.clear()

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        """Row numbers of `ids` in a flat index's storage."""
        order, sorted_ids = self.index.id_order()
        return order[np.searchsorted(sorted_ids, ids)]

    def search(self, xq: np.ndarray, k: int, ids: np.ndarray, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among `ids` (int64, sorted, all held by the index: see VectorIndex.present), D
        and I as VectorIndex.search gives them."""
        vi = self.index
        xq = np.ascontiguousarray(xq, dtype=np.float32).reshape(-1, vi.d)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        k = min(int(k), len(ids))
        if k <= 0:
            return _empty(len(xq))
        xb = vi.flat_matrix()
        if xb is not None:
            rows = self._rows(ids)
            if 4 * len(rows) >= vi.ntotal:
                return top_k(xq @ xb.T, k, rows, ids)
            sims = np.concatenate([xq @ xb[rows[i : i + 8192]].T for i in range(0, len(rows), 8192)], axis=1)
            return top_k(sims, k, None, ids)
        if len(ids) <= self._exact_max(nprobe):
            key = ids.tobytes()
            sub = self._vectors.get(key)
            if sub is None:
                if len(self._vectors) >= 8:
                    self._vectors.clear()
                sub = self._vectors[key] = vi.reconstruct_many(ids)
            # FAISS's own exhaustive search, not numpy's BLAS: an OpenBLAS product leaves its
            # threads spinning, and the IVF search that follows (FAISS's OpenMP) then crawls.
            D, rows = vi.faiss.knn(xq, sub, k, metric=vi.faiss.METRIC_INNER_PRODUCT)
            return D, ids[rows]
        if 2 * len(ids) > vi.ntotal:  # most of the index: an unfiltered search for a few more, then keep these
            got = self._most(xq, k, ids, nprobe)
            if got is not None:
                return got
        sel = self._selector(ids)
        if vi.is_ivf:
            probe = min(vi.nlist or 1, math.ceil((nprobe or vi.nprobe or 1) * vi.ntotal / len(ids)))
            return vi.ivf_search(xq, k, vi.faiss.SearchParametersIVF(sel=sel, nprobe=int(probe)))
        return vi.index.search(xq, k, params=vi.faiss.SearchParameters(sel=sel))

    def _most(self, xq: np.ndarray, k: int, ids: np.ndarray, nprobe: int | None) -> tuple[np.ndarray, np.ndarray] | None:
        """Top-k of a subset that is most of the index, from one unfiltered search asked for
        enough more that k of them are (almost always) among its answers; None when they were
        not, for every query (then the selector path answers)."""
        vi = self.index
        want = min(vi.ntotal, math.ceil(k * vi.ntotal / len(ids) * 1.5) + 8)
        if vi.is_ivf:  # as many of the subset's items looked at as an unfiltered search looks at
            nprobe = min(vi.nlist or 1, math.ceil((nprobe or vi.nprobe or 1) * vi.ntotal / len(ids)))
        D, I = vi.search(xq, want, nprobe=nprobe)
        at = np.minimum(np.searchsorted(ids, I), len(ids) - 1)
        keep = ids[at] == I  # membership by binary search: `ids` is sorted
        if (keep.sum(axis=1) < k).any():
            return None
        out_d = np.stack([D[q][keep[q]][:k] for q in range(len(xq))])
        out_i = np.stack([I[q][keep[q]][:k] for q in range(len(xq))])
        return out_d, out_i

    def _exact_max(self, nprobe: int | None) -> int:
        """Largest subset searched exactly: about as many vectors as an unfiltered IVF search
        scans (their codes are cheaper than the float vectors of an exact search, hence 4x), at
        least 1,024, at most SUBSET_EXACT_MAX."""
        vi = self.index
        if not vi.is_ivf:
            return SUBSET_EXACT_MAX
        scanned = (nprobe or vi.nprobe or 1) * vi.ntotal / max(vi.nlist or 1, 1)
        return int(min(SUBSET_EXACT_MAX, max(1024, 4 * scanned)))

    def search_many(self, xq: np.ndarray, k: int, subsets: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """`search` for several subsets (the kinds of a mixed query): on a flat index that they
        mostly cover, one product with every row serves them all."""
        vi = self.index
        xb = vi.flat_matrix()
        if xb is None or 4 * sum(len(ids) for ids in subsets) < vi.ntotal:
            return [self.search(xq, k, ids) for ids in subsets]
        xq = np.ascontiguousarray(xq, dtype=np.float32).reshape(-1, vi.d)
        sims = xq @ xb.T
        out = []
        for ids in subsets:
            ids = np.ascontiguousarray(ids, dtype=np.int64)
            out.append(top_k(sims, min(int(k), len(ids)), self._rows(ids), ids) if len(ids) else _empty(len(xq)))
        return out

    def _selector(self, ids: np.ndarray) -> Any:
        """A FAISS ID selector for `ids`, kept (by the array) until the index changes: building
        one over a million ids takes longer than the search. A subset of most of the index is
        selected as "not the others", which is smaller to build."""
        got = self._selectors.get(id(ids))
        if got is not None and got[0] is ids:
            return got[1]
        faiss = self.index.faiss
        if 2 * len(ids) > self.index.ntotal:
            inner = faiss.IDSelectorBatch(np.setdiff1d(self.index.ids(), ids, assume_unique=True))
            sel = faiss.IDSelectorNot(inner)  # holds a plain pointer to `inner`: keep it alive with it
        else:
            inner, sel = None, faiss.IDSelectorBatch(ids)
        self._selectors[id(ids)] = (ids, sel, inner)
        return sel
