"""The search benchmark at sizes that do not fit in memory as one matrix (issue 30): vectors
made in chunks into the library's own full-precision store (indexer.full_vectors, float16 on
disk), exact ground truth computed chunk by chunk, the index built through the product's own
streaming path (autoindex.build_streaming: what a library's automatic rebuild runs), then
searched. With --with-catalog, a real SQLite catalog of N items (files and items rows) is made
and searches are timed with their rows joined, as `xmr search` does (retrieval.hits.load_rows).

    python scripts/bench_stream.py --n 10000000 [--dim 512] [--queries 200] [--with-catalog]

Prints JSON with bench_search.py's keys (n, recall_at_10, single_query_p50_ms, bytes_per_vector,
top1_cos_median) and build_s, peak_rss_bytes (the whole process: ru_maxrss), full_vectors_bytes,
catalog_join_p50_ms.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer import autoindex  # noqa: E402
from indexer.full_vectors import FullVectors  # noqa: E402
from scripts.bench_search import CENTRES, SUBSPACE, clip_like  # noqa: E402

CHUNK = 100_000


def make_store(folder: Path, n: int, d: int, rng: np.random.Generator, centres: np.ndarray,
               basis: np.ndarray) -> FullVectors:
    """N CLIP-like vectors written chunk by chunk; item ids 1..N."""
    full = FullVectors(folder, d)
    for start in range(0, n, CHUNK):
        rows = min(CHUNK, n - start)
        full.append(clip_like(rows, d, rng, centres, basis), np.arange(start + 1, start + rows + 1, dtype=np.int64))
    full.committed_now()
    return full


def make_catalog(folder: Path, n: int) -> object:
    """A SQLite catalog of N pictures (one item each, ids 1..N), bulk-inserted."""
    from sqlalchemy import insert

    from indexer.catalog import File, Item
    from indexer.store import Store

    store = Store(folder, create=True)
    with store.engine.begin() as conn:
        for start in range(0, n, CHUNK):
            ids = range(start + 1, min(n, start + CHUNK) + 1)
            conn.execute(insert(File), [{"id": i, "path": f"/photos/{i // 1000:05d}/{i}.jpg", "modality": "image",
                                        "size": 2_500_000, "mtime_ns": i, "phash": f"{i:064x}"} for i in ids])
            conn.execute(insert(Item), [{"id": i, "file_id": i, "modality": "image", "chunk": 0, "embedder": "image"}
                                        for i in ids])
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--recall", type=float, default=autoindex.DEFAULT_RECALL)
    ap.add_argument("--max-memory", type=int, help="bytes for the vectors, as xmr index --max-memory")
    ap.add_argument("--with-catalog", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="working folder [default: a temporary one, removed]")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="xmr-bench-stream-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    basis = np.linalg.qr(rng.standard_normal((a.dim, SUBSPACE)))[0].T.astype(np.float32)
    centres = rng.standard_normal((CENTRES, SUBSPACE)).astype(np.float32)
    try:
        t = time.perf_counter()
        full = make_store(work, a.n, a.dim, rng, centres, basis)
        xq = clip_like(a.queries, a.dim, rng, centres, basis)
        generate_s = time.perf_counter() - t
        source = full.view(np.arange(1, a.n + 1, dtype=np.int64))
        t = time.perf_counter()
        truth = autoindex.exact_neighbours_chunked(xq, source.chunks(), 10)
        truth_s = time.perf_counter() - t
        factory = autoindex.choose_factory(a.n, a.dim, a.max_memory)
        t = time.perf_counter()
        index, tuning = autoindex.build_streaming(factory, source, a.recall)
        build_s = time.perf_counter() - t
        index.search(xq[:5], 10)
        single, found = [], []
        for q in xq:
            t = time.perf_counter()
            _, got = index.search(q[None], 10)
            single.append(time.perf_counter() - t)
            found.append(got[0])
        recall = float(np.mean([len(set(g) & set(r)) / 10 for g, r in zip(found, truth)]))
        top1 = [float(np.dot(q, full.read(int(r[0]) - 1, 1)[0])) for q, r in zip(xq, truth)]  # row i holds id i + 1
        index_path = work / "vectors.faiss"
        index.save(index_path)
        result = {
            "n": a.n, "d": a.dim, "queries": a.queries, "index": factory, "nprobe": tuning.get("nprobe"),
            "recall_at_10": round(recall, 4), "tuned_recall_at_10": tuning.get("recall_at_10"),
            "single_query_p50_ms": round(float(np.median(single)) * 1e3, 3),
            "bytes_per_vector": round(index_path.stat().st_size / a.n, 1),
            "top1_cos_median": round(float(np.median(top1)), 4),
            "generate_s": round(generate_s, 1), "ground_truth_s": round(truth_s, 1), "build_s": round(build_s, 1),
            "full_vectors_bytes": full.vec_path.stat().st_size + full.ids_path.stat().st_size,
        }
        if a.with_catalog:
            result.update(catalog(work, a.n, index, xq))
        result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result["cpu_count"] = os.cpu_count()
        print(json.dumps(result, indent=2))
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


def catalog(work: Path, n: int, index: object, xq: np.ndarray) -> dict[str, float]:
    """Searches with their rows joined from a real catalog of N items: p50 ms."""
    from retrieval.hits import hits_from

    t = time.perf_counter()
    store = make_catalog(work / "catalog", n)
    made_s = time.perf_counter() - t
    times = []
    with store.Session() as s:  # type: ignore[attr-defined]
        for q in xq:
            t = time.perf_counter()
            D, I = index.search(q[None], 10)  # type: ignore[attr-defined]
            hits = hits_from(s, D, I)
            times.append(time.perf_counter() - t)
            assert len(hits) == int((I >= 0).sum()), (hits, I)
    return {"catalog_rows": n, "catalog_make_s": round(made_s, 1),
            "catalog_join_p50_ms": round(float(np.median(times)) * 1e3, 3)}


if __name__ == "__main__":
    main()
