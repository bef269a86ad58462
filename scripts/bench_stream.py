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
import gc
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


def make_catalog(folder: Path, n: int, db: str | None = None) -> object:
    """A catalog of N pictures (one item each, ids 1..N), bulk-inserted in modest batches (a
    100k-row batch of dicts is ~0.5 GB of Python objects)."""
    from sqlalchemy import insert

    from indexer.catalog import File, Item
    from indexer.store import Store

    store = Store(folder, db=db, create=True)
    step = 20_000
    with store.engine.begin() as conn:
        for start in range(0, n, step):
            ids = range(start + 1, min(n, start + step) + 1)
            conn.execute(insert(File), [{"id": i, "path": f"/photos/{i // 1000:05d}/{i}.jpg", "modality": "image",
                                        "size": 2_500_000, "mtime_ns": i, "phash": f"{i:064x}"} for i in ids])
            conn.execute(insert(Item), [{"id": i, "file_id": i, "modality": "image", "chunk": 0, "embedder": "image"}
                                        for i in ids])
    if store.engine.dialect.name == "postgresql":  # fresh statistics, as autovacuum would give
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--recall", type=float, default=autoindex.DEFAULT_RECALL)
    ap.add_argument("--max-memory", type=int, help="bytes for the vectors, as xmr index --max-memory")
    ap.add_argument("--with-catalog", action="store_true")
    ap.add_argument("--postgres", metavar="URL", help="also join from a PostgreSQL catalog made on this server")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="working folder [default: a temporary one, removed]")
    a = ap.parse_args()
    print(json.dumps(bench_streaming(a.n, a.dim, a.queries, a.recall, a.max_memory, a.with_catalog, a.postgres,
                                     a.seed, a.work), indent=2))


def bench_streaming(n: int, d: int, queries: int, recall: float, max_memory: int | None, with_catalog: bool,
                    postgres: str | None, seed: int = 0, work_dir: str | None = None) -> dict:
    """Everything in the order that keeps memory lowest: the catalogs before the index exists,
    the index saved and freed after its build, then opened memory-mapped as a library opens it."""
    work = Path(work_dir or tempfile.mkdtemp(prefix="xmr-bench-stream-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, SUBSPACE)))[0].T.astype(np.float32)
    centres = rng.standard_normal((CENTRES, SUBSPACE)).astype(np.float32)
    result: dict = {"n": n, "d": d, "queries": queries}
    try:
        t = time.perf_counter()
        full = make_store(work, n, d, rng, centres, basis)
        xq = clip_like(queries, d, rng, centres, basis)
        result["generate_s"] = round(time.perf_counter() - t, 1)
        stores = {}
        if with_catalog or postgres:
            stores = {"sqlite": None, **({"postgresql": postgres} if postgres else {})}
            for name, db in stores.items():
                t = time.perf_counter()
                stores[name] = make_catalog(work / f"catalog-{name}", n, db)
                result[f"catalog_make_s_{name}"] = round(time.perf_counter() - t, 1)
            result.update(time_stats(stores))
        source = full.view(np.arange(1, n + 1, dtype=np.int64))
        t = time.perf_counter()
        truth = autoindex.exact_neighbours_chunked(xq, source.chunks(), 10)
        result["ground_truth_s"] = round(time.perf_counter() - t, 1)
        factory = autoindex.choose_factory(n, d, max_memory)
        t = time.perf_counter()
        index, tuning = autoindex.build_streaming(factory, source, recall)
        result["build_s"] = round(time.perf_counter() - t, 1)
        result.update(index=factory, nprobe=tuning.get("nprobe"), tuned_recall_at_10=tuning.get("recall_at_10"))
        index_path = work / "vectors.faiss"
        index.save(index_path)
        del index
        gc.collect()
        result.update(search(index_path, factory, tuning.get("nprobe"), xq, truth, full))
        result["bytes_per_vector"] = round(index_path.stat().st_size / n, 1)
        result["full_vectors_bytes"] = full.vec_path.stat().st_size + full.ids_path.stat().st_size
        for name, store in stores.items():
            result[f"catalog_join_p50_ms_{name}"] = join_p50(store, index_path, factory, tuning.get("nprobe"), xq)
        if stores:
            result["catalog_join_p50_ms"] = result["catalog_join_p50_ms_sqlite"]
        result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result["cpu_count"] = os.cpu_count()
        return result
    finally:
        if not work_dir:
            shutil.rmtree(work, ignore_errors=True)


def search(index_path: Path, factory: str, nprobe: int | None, xq: np.ndarray, truth: np.ndarray,
           full: FullVectors) -> dict:
    """The index opened memory-mapped (what a library does), its open + first query timed, then
    single queries: p50 and recall@10 against the exact neighbours."""
    from indexer.vectors import VectorIndex

    t = time.perf_counter()
    index = VectorIndex.load(index_path, factory, mmap=True)
    open_s = time.perf_counter() - t
    if nprobe:
        index.nprobe = nprobe
    index.search(xq[:1], 10)
    first_s = time.perf_counter() - t
    single, found = [], []
    for q in xq:
        t = time.perf_counter()
        _, got = index.search(q[None], 10)
        single.append(time.perf_counter() - t)
        found.append(got[0])
    recall = float(np.mean([len(set(g) & set(r)) / 10 for g, r in zip(found, truth)]))
    top1 = [float(np.dot(q, full.read(int(r[0]) - 1, 1)[0])) for q, r in zip(xq, truth)]  # row i holds id i + 1
    return {"recall_at_10": round(recall, 4), "single_query_p50_ms": round(float(np.median(single)) * 1e3, 3),
            "top1_cos_median": round(float(np.median(top1)), 4), "mmap_open_s": round(open_s, 3),
            "mmap_open_and_first_query_s": round(first_s, 3)}


def time_stats(stores: dict) -> dict:
    """`xmr stats`' queries (indexer.stats.read_stats) on each catalog, in seconds: counted from
    the tables, what the end of an index run takes to keep the counts (Store.keep_counts), and
    read with the counts kept (what `xmr stats` does after an index run)."""
    from indexer.stats import read_stats

    out = {}
    for name, store in stores.items():
        for label in ("counted", "keep", "kept"):
            t = time.perf_counter()
            if label == "keep":
                store.keep_counts()  # type: ignore[attr-defined]
            else:
                with store.engine.connect() as conn:  # type: ignore[attr-defined]
                    st = read_stats(lambda sql: list(conn.exec_driver_sql(sql).fetchall()))
                assert st["counts_kept"] == (label == "kept") and st["items"] > 0, st
            out[f"stats_{label}_s_{name}"] = round(time.perf_counter() - t, 3)
    return out


def join_p50(store: object, index_path: Path, factory: str, nprobe: int | None, xq: np.ndarray) -> float:
    """Searches with their rows joined from a catalog of N items (retrieval.hits.hits_from, as
    `xmr search` does): p50 ms."""
    from retrieval.hits import hits_from
    from indexer.vectors import VectorIndex

    index = VectorIndex.load(index_path, factory, mmap=True)
    if nprobe:
        index.nprobe = nprobe
    times = []
    with store.Session() as s:  # type: ignore[attr-defined]
        hits_from(s, *index.search(xq[:1], 10))
        for q in xq:
            t = time.perf_counter()
            D, I = index.search(q[None], 10)
            hits = hits_from(s, D, I)
            times.append(time.perf_counter() - t)
            assert len(hits) == int((I >= 0).sum()), (hits, I)
    return round(float(np.median(times)) * 1e3, 3)


if __name__ == "__main__":
    main()
