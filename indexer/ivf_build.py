"""Building a trained (IVF) FAISS index from vectors that come in chunks, in memory that does
not grow past the index itself: what VectorIndex.build_streaming (and through it the automatic
rebuilds of indexer.autoindex) runs."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from retrieval.errors import LibraryError

Chunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


def train_and_fill(faiss: Any, factory: str, d: int, sample: Callable[[int], np.ndarray], chunks: Chunks,
                   seed: int = 0, progress: Callable[[int], None] | None = None) -> Any:
    """A faiss index of `factory` trained on `sample(n)` and filled from `chunks()`."""
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = 10  # k-means converges well before faiss's 25 on embeddings; build time halves
    ivf.cp.seed = seed
    if hasattr(index, "chain"):  # OPQ rotation: 10 rounds instead of 50, most of the gain
        for i in range(index.chain.size()):
            vt = faiss.downcast_VectorTransform(index.chain.at(i))
            if hasattr(vt, "niter"):
                vt.niter = 10
    # faiss wants >= 39 points a list, and PQ's 256-centroid codebooks as many for theirs; the
    # sample (1.3 GB at 16k lists) is freed before filling
    wanted = 39 * max(ivf.nlist, 256 if "PQ" in factory else 0)
    index.train(np.ascontiguousarray(sample(wanted), dtype=np.float32))
    fill_reserved(faiss, index, chunks, progress)
    return index


def fill_reserved(faiss: Any, index: Any, chunks: Chunks, progress: Callable[[int], None] | None = None) -> None:
    """Add every chunk to a trained IVF index with each list allocated once, at its final size.

    Lists grown entry by entry double their capacity (std::vector): up to 2x the codes' memory,
    GBs at 10M. A first pass assigns every vector to its list (the cost an add pays anyway) and
    keeps the assignments; each list is then reserved at its count and the second pass adds the
    codes with the assignments given (faiss's add_core), so nothing is assigned twice."""
    ivf = faiss.extract_index_ivf(index)
    chain = ([faiss.downcast_VectorTransform(index.chain.at(i)) for i in range(index.chain.size())]
             if hasattr(index, "chain") else [])

    def prepared(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        for transform in chain:  # OPQ: the lists hold rotated vectors
            x = transform.apply(x)
        return x

    assigned = [ivf.quantizer.assign(prepared(x), 1).ravel().astype(np.int32) for _, x in chunks()]  # 40 MB at 10M
    counts = np.bincount(np.concatenate(assigned), minlength=ivf.nlist) if assigned else np.zeros(0, np.int64)
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    if hasattr(lists, "resize"):  # ArrayInvertedLists: shrinking keeps the capacity
        for no in np.flatnonzero(counts):
            lists.resize(int(no), int(counts[no]))
            lists.resize(int(no), 0)
    for (ids, x), where in zip(chunks(), assigned):
        if len(where) != len(ids):
            raise LibraryError("the vectors changed while the index was being built")
        xt, ids, where = prepared(x), np.ascontiguousarray(ids, dtype=np.int64), where.astype(np.int64)
        ivf.add_core(len(ids), faiss.swig_ptr(xt), faiss.swig_ptr(ids), faiss.swig_ptr(where))
        if progress is not None:
            progress(len(ids))
    index.ntotal = ivf.ntotal
