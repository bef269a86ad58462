"""Search benchmark: xmr's FAISS path against what rclip does (numpy matmul over every vector).

    python scripts/bench_search.py [--sizes 10000 100000] [--dim 512] [--queries 200]

Prints JSON. Data are CLIP-like (clustered in a low-dimensional subspace, unit norm), not
uniform noise, in which nothing is anyone's neighbour. Ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.vectors import VectorIndex  # noqa: E402


# Spread inside a cluster: tuned so the median cosine to the 1st / 10th exact neighbour is about
# 0.84 / 0.81 at N = 100k, as for real photo embeddings.
SPREAD = 0.6


def clip_like(n: int, d: int, rng: np.random.Generator, centres: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Points near random centres inside a 64-dim subspace, plus a little isotropic noise."""
    c = centres[rng.integers(0, len(centres), n)]
    x = (c + SPREAD * rng.standard_normal(c.shape).astype(np.float32)) @ basis + 0.02 * rng.standard_normal((n, d)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def numpy_topk(xb: np.ndarray, xq: np.ndarray, k: int) -> np.ndarray:
    """rclip's method: one matmul against every stored vector, then argpartition."""
    sims = xq @ xb.T
    part = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def best_of(fn, repeat: int = 3) -> float:
    """Seconds for one call, best of `repeat` after the warm-up call the caller made."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench(n: int, d: int, nq: int, k: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    sub = 64
    basis = np.linalg.qr(rng.standard_normal((d, sub)))[0].T.astype(np.float32)  # (sub, d), orthonormal rows
    centres = rng.standard_normal((max(10, n // 500), sub)).astype(np.float32)
    xb = clip_like(n, d, rng, centres, basis)
    xq = clip_like(nq, d, rng, centres, basis)

    ref = numpy_topk(xb, xq, k)
    numpy_batch_s = best_of(lambda: numpy_topk(xb, xq, k))
    single = []
    for q in xq[:50]:
        t = time.perf_counter()
        numpy_topk(xb, q[None], k)
        single.append(time.perf_counter() - t)
    numpy_p50 = float(np.median(single))

    t = time.perf_counter()
    vi = VectorIndex.create(d)
    vi.add(xb, np.arange(n))
    build_s = time.perf_counter() - t
    D, I = vi.search(xq, k)
    faiss_batch_s = best_of(lambda: vi.search(xq, k))
    single = []
    for q in xq[:50]:
        t = time.perf_counter()
        vi.search(q[None], k)
        single.append(time.perf_counter() - t)
    faiss_p50 = float(np.median(single))
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(I, ref)]))
    sims_sorted = np.sort(xq @ xb.T, axis=1)[:, ::-1]
    return {
        "n": n,
        "d": d,
        "queries": nq,
        "k": k,
        "index": vi.factory,
        "median_cos_1st_10th": [float(np.median(sims_sorted[:, 0])), float(np.median(sims_sorted[:, 9]))],
        "recall_at_10_vs_exact": recall,
        "faiss_qps_batched": nq / faiss_batch_s,
        "numpy_qps_batched": nq / numpy_batch_s,
        "speedup_batched": numpy_batch_s / faiss_batch_s,
        "faiss_single_p50_ms": faiss_p50 * 1e3,
        "numpy_single_p50_ms": numpy_p50 * 1e3,
        "speedup_single": numpy_p50 / faiss_p50,
        "build_s": build_s,
        "bytes_per_vector": 4 * d + 8,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import faiss

    results = [bench(n, a.dim, a.queries, a.k, a.seed) for n in a.sizes]
    print(json.dumps({"machine": platform.processor() or platform.machine(), "faiss": faiss.__version__, "results": results}, indent=2))


if __name__ == "__main__":
    main()
