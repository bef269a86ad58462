"""Which FAISS index a library gets, and its search parameters, from N, d and a memory budget.

In the spirit of autofaiss: exact Flat while it is small; above that an IVF index whose code
size fits the budget (SQ8 by default: 1 byte a dimension, ~0.99 recall on embeddings; SQ4 and
OPQ+PQ under tighter budgets). Unlike autofaiss, the search parameter (nprobe) is then tuned to
a recall target measured against exact search on held-out queries, and the measured recall and
latency are stored for `xmr stats`. HNSW is not offered: it cannot remove vectors, and a
library must forget deleted files.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable

import numpy as np

from indexer.refine import Refiner, wants_refine
from indexer.vectors import VectorIndex, import_faiss, is_ivf
from retrieval.errors import UsageError

FLAT_MAX = 20_000  # exact search up to here (and no slower than numpy: see VectorIndex.search)
DEFAULT_RECALL = 0.95
TUNE_QUERIES = 500
PQ_MIN = 10_000
K = 10


def nlist_for(n: int) -> int:
    """About 4 sqrt(N) lists (a power of two), with >= 39 training points each."""
    nlist = 2 ** round(math.log2(max(4 * math.sqrt(max(n, 1)), 16)))
    nlist = min(max(nlist, 16), 65536)
    while nlist > 16 and nlist * 39 > n:
        nlist //= 2
    return nlist


def choose_factory(n: int, d: int, max_memory: int | None = None, flat_max: int | None = None) -> str:
    """The factory string for N vectors of dimension d within `max_memory` bytes (None: no limit)."""
    flat_max = FLAT_MAX if flat_max is None else flat_max
    budget = max_memory / max(n, 1) if max_memory else math.inf
    if n <= flat_max and budget >= 4 * d + 8:
        return "Flat"
    nlist = nlist_for(n)
    overhead = 8 + nlist * d * 4 / max(n, 1)  # the id in its list + the coarse centroids
    if budget >= d + overhead:
        return f"IVF{nlist},SQ8"
    if budget >= d / 2 + overhead:
        return f"IVF{nlist},SQ4"
    if n >= PQ_MIN:  # PQ's 256-centroid codebooks need ~10k points to train
        for m in (256, 128, 64, 32, 16, 8):
            if d % m == 0 and m + overhead <= budget:
                return f"OPQ{m},IVF{nlist},PQ{m}"
    need = (8 + overhead) * n
    raise UsageError(f"--max-memory is too small for {n:,} vectors of dimension {d}: give at least {need / 2**20:.0f} MiB")


MARGIN_Z = 1.645  # one-sided 95 %: the tuned recall's lower bound must reach the target


def exact_neighbours(xq: np.ndarray, xb: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the exact top-k by inner product (FAISS brute force)."""
    faiss = import_faiss()
    _, idx = faiss.knn(np.ascontiguousarray(xq, np.float32), np.ascontiguousarray(xb, np.float32), k, metric=faiss.METRIC_INNER_PRODUCT)
    return idx


def exact_neighbours_chunked(xq: np.ndarray, chunks: Iterable[tuple[np.ndarray, np.ndarray]], k: int) -> np.ndarray:
    """The ids of the exact top-k by inner product over (ids, vectors) chunks, never all at once."""
    faiss = import_faiss()
    xq = np.ascontiguousarray(xq, np.float32)
    best_d = np.full((len(xq), k), -np.inf, np.float32)
    best_i = np.full((len(xq), k), -1, np.int64)
    for ids, xb in chunks:
        d, i = faiss.knn(xq, np.ascontiguousarray(xb, np.float32), min(k, len(xb)), metric=faiss.METRIC_INNER_PRODUCT)
        all_d = np.concatenate([best_d, d], axis=1)
        all_i = np.concatenate([best_i, np.where(i >= 0, ids[np.maximum(i, 0)], -1)], axis=1)
        top = np.argsort(-all_d, axis=1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(all_d, top, 1), np.take_along_axis(all_i, top, 1)
    return best_i


def tune(
    index: VectorIndex, xb: np.ndarray, ids: np.ndarray, target: float = DEFAULT_RECALL,
    queries: int = TUNE_QUERIES, seed: int = 1,
) -> dict[str, Any]:
    """Smallest nprobe whose recall@10 against exact search reaches `target` with a margin
    (see `tune_with`), on queries held out from the library's own vectors."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(xb), min(queries, len(xb)), replace=False)
    return tune_with(index, xb[pick], ids[pick], ids[exact_neighbours(xb[pick], xb, K + 1)], target)


def tune_with(index: VectorIndex, xq: np.ndarray, self_ids: np.ndarray, gt: np.ndarray,
              target: float = DEFAULT_RECALL) -> dict[str, Any]:
    """Smallest nprobe whose recall@10 against the exact neighbours `gt` (ids, K + 1 a query)
    reaches `target` with a margin.

    Each query's own vector (`self_ids`) is not counted as a neighbour (it would make recall
    look better than a real query sees). The measured mean is itself an estimate from a few
    hundred queries: what must reach the target is its one-sided 95 % lower bound (mean - 1.645
    standard errors), so that queries the tuner never saw meet `target` too.
    """
    def recall() -> tuple[float, float]:
        """(mean recall@10, its lower bound) over the held-out queries."""
        _, got = index.search(xq, K + 1)  # with its refinement, if any (indexer.refine)
        per_query = np.empty(len(xq))
        for q in range(len(xq)):
            truth = [i for i in gt[q] if i != self_ids[q]][:K]
            found = [i for i in got[q] if i != self_ids[q] and i != -1][:K]
            per_query[q] = len(set(truth) & set(found)) / max(len(truth), 1)
        mean = float(per_query.mean())
        return mean, mean - MARGIN_Z * float(per_query.std(ddof=1) if len(xq) > 1 else 0.0) / np.sqrt(len(xq))

    result: dict[str, Any] = {"target": target, "queries": int(len(xq)), "k": K}
    if not index.is_ivf:
        result.update(nprobe=None, recall_at_10=1.0, recall_lower_bound=1.0)
    else:
        nprobe, measured, bound = 1, 0.0, 0.0
        while True:
            index.nprobe = nprobe
            measured, bound = recall()
            if bound >= target or nprobe >= index.nlist:
                break
            nprobe *= 2
        result.update(nprobe=nprobe, recall_at_10=round(measured, 4), recall_lower_bound=round(bound, 4))
        if bound < target:
            result["note"] = "target not reached even with every list probed"
    times = []
    for q in xq[:100]:
        t = time.perf_counter()
        index.search(q.reshape(1, -1), K)
        times.append(time.perf_counter() - t)
    result["p50_ms"] = round(float(np.median(times)) * 1000, 3)
    return result


def build(
    factory: str, ids: np.ndarray, xb: np.ndarray, target: float, progress: Callable[[int], None] | None = None
) -> tuple[VectorIndex, dict[str, Any]]:
    """A new index of `factory` over (ids, xb), tuned to `target`; returns it and its tuning."""
    t0 = time.perf_counter()
    if is_ivf(factory):
        index = VectorIndex.build(factory, xb, ids, progress=progress)
    else:
        index = VectorIndex.create(xb.shape[1], factory)
        index.add(xb, ids)
        if progress:
            progress(len(xb))
    seconds = time.perf_counter() - t0
    tuning = tune(index, xb, ids, target) if len(xb) else {"target": target, "nprobe": index.nprobe}
    tuning.update(build_s=round(seconds, 2), n_built=int(len(xb)), factory=factory)
    return index, tuning


def build_streaming(factory: str, source: Any, target: float, progress: Callable[[int], None] | None = None,
                    queries: int = TUNE_QUERIES) -> tuple[VectorIndex, dict[str, Any]]:
    """`build` from a source of vectors read in chunks (indexer.full_vectors.FullVectors, its
    `chunks()` and `sample(n)`), never all of them in memory: the index is trained on a sample,
    filled chunk by chunk, and tuned against exact neighbours computed chunk by chunk."""
    t0 = time.perf_counter()
    if is_ivf(factory):
        index = VectorIndex.build_streaming(factory, source.d, lambda n: source.sample(n)[1], source.chunks,
                                            progress=progress)
        if wants_refine(factory) and getattr(source, "full", None) is not None:
            index.refine = Refiner(source.full)  # tuned, and searched, with its candidates re-ranked
    else:
        index = VectorIndex.create(source.d, factory)
        for ids, xb in source.chunks():
            index.add(xb, ids)
            if progress:
                progress(len(ids))
    seconds = time.perf_counter() - t0
    q_ids, xq = source.sample(queries, seed=1)
    tuning = (tune_with(index, xq, q_ids, exact_neighbours_chunked(xq, source.chunks(), K + 1), target)
              if len(xq) else {"target": target, "nprobe": index.nprobe})
    tuning.update(build_s=round(seconds, 2), n_built=int(index.ntotal), factory=factory)
    return index, tuning


def tune_streaming(index: VectorIndex, source: Any, target: float, queries: int = TUNE_QUERIES) -> dict[str, Any]:
    """`tune` against a source read in chunks (see build_streaming)."""
    q_ids, xq = source.sample(queries, seed=1)
    return tune_with(index, xq, q_ids, exact_neighbours_chunked(xq, source.chunks(), K + 1), target)


def wants_rebuild(current: str, n: int, d: int, policy: dict[str, Any], tuning: dict[str, Any] | None) -> str | None:
    """The factory to rebuild into, or None to keep adding to the current index.

    Hysteresis: Flat -> IVF above FLAT_MAX, IVF -> Flat only below half of it; an IVF index is
    retrained when the library grew or shrank 8x since it was built, or the budget changed it.
    """
    want = choose_factory(n, d, policy.get("max_memory"))
    cur = current.split(",", 1)[1] if current.startswith("IDMap2,") else current
    if not is_ivf(cur):
        return want if is_ivf(want) else None
    if not is_ivf(want):
        return "Flat" if n < FLAT_MAX // 2 else None
    built = (tuning or {}).get("n_built") or n
    codec_changed = cur.split(",")[-1] != want.split(",")[-1]
    if codec_changed or n >= 8 * built or n * 8 <= built:
        return want
    return None
