"""Search benchmark: xmr's automatically chosen index against what rclip does (numpy matmul
of the whole query batch against every stored vector, then argpartition).

    python scripts/bench_search.py --n 1000000 --dim 512 --queries 1000 [--mixed]
        [--filter-fraction 0.001 0.01 0.1 0.5] [--dupes 0.95]
    python scripts/bench_search.py --n 10000000 --queries 200 --with-catalog [--postgres URL]

Above --stream-above vectors (default 2M: 4 GB as one float32 matrix), or with --stream, the run
is the streaming one of scripts/bench_stream.py: vectors made in chunks into the library's
full-precision store, ground truth chunk by chunk, the product's streaming build, the index
opened memory-mapped, catalogs of N rows joined; no numpy comparison (it needs the matrix).

Prints one JSON object. Data are CLIP-like: 2,000 centres in a random 64-dim subspace, points =
centre + spread inside the subspace + a little isotropic noise, normalised (uniform noise is not
CLIP-like: nothing is anyone's neighbour in 512 dimensions); queries are drawn the same way and
held out. The index is what `xmr index` would build for N vectors (`indexer.autoindex`), tuned
to recall@10 >= --recall on its own held-out queries; recall here is measured on the benchmark's
queries against exact search. Ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer import autoindex  # noqa: E402
from indexer.vectors import VectorIndex  # noqa: E402

# Spread inside a cluster: with 2,000 centres the median cosine to the 1st / 10th exact
# neighbour is about 0.84 / 0.81 at N = 1M, as for real photo embeddings.
SPREAD = 0.6
CENTRES = 2000
SUBSPACE = 64


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
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_mixed(index: VectorIndex, xq: np.ndarray, k: int, rng: np.random.Generator, n_text: int, n_audio: int) -> dict:
    """A library of several kinds in one index (ids drawn at random): most vectors pictures,
    `n_audio` sound windows and, if `n_text`, that many passages of text. What `xmr search` does
    for a mixed query (each kind's own best k: retrieval.search.Searcher, plus each kind's
    calibration sample) against one unfiltered search, single queries, p50."""
    ids = index.ids()
    shuffled = rng.permutation(ids)
    kinds = {"audio": np.sort(shuffled[:n_audio]), "text": np.sort(shuffled[n_audio : n_audio + n_text]),
             "image": np.sort(shuffled[n_audio + n_text :])}
    kinds = {m: v for m, v in kinds.items() if len(v)}
    samples = {m: index.reconstruct_many(rng.choice(v, min(512, len(v)), replace=False)) for m, v in kinds.items()}
    for m in kinds:  # warm: the subset caches are built once per index, as a long-lived reader's are
        index.search_subset(xq[:1], k, kinds[m])

    def mixed(q: np.ndarray) -> None:
        index.search_subsets(q, k, list(kinds.values()))
        for m in kinds:
            sims = samples[m] @ q[0]
            float(sims.mean()), float(sims.std())

    def p50(fn) -> float:
        times = []
        for q in xq[:200]:
            t = time.perf_counter()
            fn(q[None])
            times.append(time.perf_counter() - t)
        return float(np.median(times)) * 1e3

    unfiltered, mixed_ms = p50(lambda q: index.search(q, k)), p50(mixed)
    rare = p50(lambda q: index.search_subset(q, k, kinds["audio"]))
    recall = {}  # each kind's answer against exact search over that kind's stored vectors
    for m, subset in kinds.items():
        if len(subset) > 100_000:
            continue
        stored = index.reconstruct_many(subset)
        _, got = index.search_subset(xq[:200], k, subset)
        truth = subset[autoindex.exact_neighbours(xq[:200], stored, min(k, len(subset)))]
        recall[m] = round(float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, truth)])), 4)
    return {"kinds": {m: int(len(v)) for m, v in kinds.items()}, "recall_at_10_within_kind": recall,
            "unfiltered_p50_ms": round(unfiltered, 3), "mixed_p50_ms": round(mixed_ms, 3),
            "mixed_over_unfiltered": round(mixed_ms / unfiltered, 2), "rare_kind_only_p50_ms": round(rare, 3)}


def bench_filters(index: VectorIndex, xb: np.ndarray, xq: np.ndarray, k: int, rng: np.random.Generator,
                  fractions: list[float]) -> dict:
    """Filtered search (what `xmr search --after/--in/--tag ...` runs once the filter's ids are
    known: retrieval.filters -> VectorIndex.search_subset): a random fraction F of the library
    passes. Single queries, p50 (the first query, which builds the filter's selector or exact
    copy, reported apart: a server keeps them for the next queries); recall@10 against exact
    search over the passing vectors."""
    out = {}
    for f in fractions:
        subset = np.sort(rng.choice(index.ntotal, max(k, int(round(f * index.ntotal))), replace=False)).astype(np.int64)
        t = time.perf_counter()
        index.search_subset(xq[:1], k, subset)
        first = time.perf_counter() - t
        times, got = [], []
        for q in xq[:200]:
            t = time.perf_counter()
            _, I = index.search_subset(q[None], k, subset)
            times.append(time.perf_counter() - t)
            got.append(I[0])
        truth = subset[autoindex.exact_neighbours(xq[:200], xb[subset], k)]
        rec = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth)]))
        out[str(f)] = {"passing": int(len(subset)), "p50_ms": round(float(np.median(times)) * 1e3, 3),
                       "first_query_ms": round(first * 1e3, 1), "recall_at_10": round(rec, 4)}
    return out


def plant_copies(xb: np.ndarray, n_copies: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """The last n_copies vectors become near copies (cosine about 0.98) of random others: what a
    re-encoded or resized photo is to its original. Returns (original, copy) pairs."""
    n = len(xb)
    originals = rng.choice(n - n_copies, n_copies, replace=False)
    for j, o in enumerate(originals):
        v = xb[o] + 0.2 * rng.standard_normal(xb.shape[1]).astype(np.float32) / np.sqrt(xb.shape[1])
        xb[n - n_copies + j] = v / np.linalg.norm(v)
    return [(int(o), n - n_copies + j) for j, o in enumerate(originals)]


def bench_dupes(index: VectorIndex, planted: list[tuple[int, int]], threshold: float) -> dict:
    """`xmr dupes`' near-duplicate search over the whole library (retrieval.dupes.near_pairs:
    FAISS range search of every vector in the index), its time and the planted pairs found."""
    from retrieval.dupes import near_pairs

    t = time.perf_counter()
    pairs = near_pairs(index, index.ids(), None, threshold)
    seconds = time.perf_counter() - t
    found = {(min(a, b), max(a, b)) for a, b, _ in pairs}
    want = {(min(a, b), max(a, b)) for a, b in planted}
    return {"threshold": threshold, "seconds": round(seconds, 1), "vectors_per_s": round(index.ntotal / seconds),
            "pairs": len(found), "planted": len(want), "planted_found": round(len(found & want) / max(len(want), 1), 4)}


def bench(n: int, d: int, nq: int, k: int, seed: int, recall: float, max_memory: int | None, mixed: bool = False,
          fractions: list[float] | None = None, dupes: float | None = None, torch_device: str | None = None) -> dict:
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, SUBSPACE)))[0].T.astype(np.float32)  # orthonormal rows
    centres = rng.standard_normal((CENTRES, SUBSPACE)).astype(np.float32)
    t = time.perf_counter()
    chunk = 100_000
    xb = np.empty((n, d), np.float32)
    for i in range(0, n, chunk):  # in chunks: the float64 temporaries of one 1M block would need 4 GB
        xb[i : i + chunk] = clip_like(min(chunk, n - i), d, rng, centres, basis)
    xq = clip_like(nq, d, rng, centres, basis)
    planted = plant_copies(xb, max(1, n // 1000), rng) if dupes else []
    gen_s = time.perf_counter() - t

    # rclip's method on the whole batch, and one query at a time
    t = time.perf_counter()
    ref = numpy_topk(xb, xq, k)
    numpy_batch_s = time.perf_counter() - t
    if numpy_batch_s < 2:  # cheap enough to take the best of three, as for xmr below
        numpy_batch_s = min(numpy_batch_s, best_of(lambda: numpy_topk(xb, xq, k)))
    single = []
    for q in xq[:20]:
        t = time.perf_counter()
        numpy_topk(xb, q[None], k)
        single.append(time.perf_counter() - t)
    numpy_p50 = float(np.median(single))
    cos = np.stack([np.sum(xq * xb[ref[:, j]], axis=1) for j in (0, k - 1)], axis=1)

    factory = autoindex.choose_factory(n, d, max_memory)
    ids = np.arange(n, dtype=np.int64)
    t = time.perf_counter()
    index, tuning = autoindex.build(factory, ids, xb, recall)
    build_s = time.perf_counter() - t
    index.search(xq[:10], k)  # warm-up
    t = time.perf_counter()
    _, got = index.search(xq, k)
    xmr_batch_s = time.perf_counter() - t
    if xmr_batch_s < 2:
        xmr_batch_s = min(xmr_batch_s, best_of(lambda: index.search(xq, k)))
    single = []
    for q in xq[:200]:
        t = time.perf_counter()
        index.search(q[None], k)
        single.append(time.perf_counter() - t)
    xmr_p50 = float(np.median(single))
    measured = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, ref)]))

    mixed_result = None
    if mixed:  # the case (pictures and 5 sounds), and a harder one with 5 % text as well
        mixed_result = {"pictures_and_5_sounds": bench_mixed(index, xq, k, rng, n_text=0, n_audio=5),
                        "with_5_percent_text": bench_mixed(index, xq, k, rng, n_text=max(1, n // 20), n_audio=5)}
    filtered = bench_filters(index, xb, xq, k, rng, fractions) if fractions else None
    dupes_result = bench_dupes(index, planted, dupes) if dupes else None
    exact_torch = bench_torch_exact(xb, xq, ref, k, torch_device) if torch_device else None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vectors.faiss"
        index.save(path)
        file_bytes = path.stat().st_size
        np.save(Path(tmp) / "q.npy", xq[:1])
        # RAM is measured in a fresh process: this one's allocator keeps freed memory around.
        probe = subprocess.run(
            [sys.executable, __file__, "--probe-load", str(path), factory, str(tuning.get("nprobe") or 0)],
            capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
        )
        loads = json.loads(probe.stdout)
    return {
        "n": n,
        "d": d,
        "queries": nq,
        "k": k,
        "index": factory,
        "nprobe": tuning.get("nprobe"),
        "recall_at_10": round(measured, 4),
        "tuned_recall_at_10": tuning["recall_at_10"],
        "tuned_recall_lower_bound": tuning.get("recall_lower_bound"),
        "xmr_qps": round(nq / xmr_batch_s, 1),
        "numpy_qps": round(nq / numpy_batch_s, 1),
        "speedup": round(numpy_batch_s / xmr_batch_s, 1),
        "single_query_p50_ms": round(xmr_p50 * 1e3, 3),
        "numpy_single_query_p50_ms": round(numpy_p50 * 1e3, 3),
        "bytes_per_vector": round(loads["ram_bytes"] / n, 1),
        "file_bytes_per_vector": round(file_bytes / n, 1),
        "top1_cos_median": round(float(np.median(cos[:, 0])), 4),
        "top10_cos_median": round(float(np.median(cos[:, 1])), 4),
        "generate_s": round(gen_s, 1),
        "build_s": round(build_s, 1),
        "load_s": loads["load_s"],
        "mmap_open_and_first_query_s": loads["mmap_open_and_first_query_s"],
        "mmap_rss_bytes_per_vector_after_first_query": round(loads["mmap_ram_bytes"] / n, 1),
        **({"mixed": mixed_result} if mixed_result else {}),
        **({"filtered": filtered} if filtered else {}),
        **({"dupes": dupes_result} if dupes_result else {}),
        **({"exact_through_torch": exact_torch} if exact_torch else {}),
    }


def bench_torch_exact(xb: np.ndarray, xq: np.ndarray, ref: np.ndarray, k: int, device: str) -> dict:
    """Exact search over every vector through torch on `device` (indexer.gpu.TorchCopy: what a
    GPU without faiss-gpu searches with): one query's p50, a batch, recall against numpy's top-k."""
    from indexer.gpu import TorchCopy

    index = VectorIndex.create(xb.shape[1], "Flat")
    index.add(xb, np.arange(len(xb), dtype=np.int64))
    index._gpu = TorchCopy(device)
    t = time.perf_counter()
    index.search(xq[:1], k)  # uploads the matrix
    upload_s = time.perf_counter() - t
    single = []
    for q in xq[:200]:
        t = time.perf_counter()
        index.search(q[None], k)
        single.append(time.perf_counter() - t)
    t = time.perf_counter()
    _, got = index.search(xq, k)
    batch_s = time.perf_counter() - t
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, ref)]))
    return {"device": device, "upload_s": round(upload_s, 2), "single_query_p50_ms": round(float(np.median(single)) * 1e3, 3),
            f"batch_of_{len(xq)}_ms": round(batch_s * 1e3, 2), "recall_at_10": round(recall, 4)}


def probe_load(path: str, factory: str, nprobe: int) -> None:
    """(In a fresh process) RAM and time to load the index fully, then to open it mmapped and answer one query."""
    q = np.load(Path(path).parent / "q.npy")
    VectorIndex.create(q.shape[1], "Flat")  # import faiss and its BLAS before measuring
    before = rss_bytes()
    t = time.perf_counter()
    loaded = VectorIndex.load(Path(path), factory)
    load_s = time.perf_counter() - t
    ram = rss_bytes() - before
    del loaded
    gc.collect()
    before = rss_bytes()
    t = time.perf_counter()
    mapped = VectorIndex.load(Path(path), factory, mmap=True)
    if mapped.is_ivf and nprobe:
        mapped.nprobe = nprobe
    mapped.search(q, 10)
    first = time.perf_counter() - t
    print(json.dumps({"ram_bytes": ram, "load_s": round(load_s, 3), "mmap_open_and_first_query_s": round(first, 4),
                      "mmap_ram_bytes": rss_bytes() - before}))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--probe-load":
        probe_load(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--recall", type=float, default=autoindex.DEFAULT_RECALL)
    ap.add_argument("--max-memory", type=int, help="bytes for the vectors, as xmr index --max-memory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mixed", action="store_true", help="also time a mixed query over three kinds, one of 5 items")
    ap.add_argument("--filter-fraction", type=float, nargs="+", metavar="F",
                    help="also time filtered searches where a fraction F of the library passes (e.g. 0.01 0.1 0.5)")
    ap.add_argument("--dupes", type=float, metavar="T", help="also time `xmr dupes`' range search at cosine T (e.g. 0.95)")
    ap.add_argument("--torch-device", metavar="DEV", help="also time the exact search through torch on DEV (cuda: the GPU path without faiss-gpu)")
    ap.add_argument("--stream", action="store_true", help="the streaming benchmark (scripts/bench_stream.py) at any N")
    ap.add_argument("--stream-above", type=int, default=2_000_000, metavar="N")
    ap.add_argument("--with-catalog", action="store_true", help="streaming: also join rows from a SQLite catalog of N items")
    ap.add_argument("--postgres", metavar="URL", help="streaming: also from a PostgreSQL catalog made on this server")
    ap.add_argument("--work", help="streaming: working folder, kept [default: a temporary one, removed]")
    a = ap.parse_args()
    import faiss

    if a.stream or a.n > a.stream_above or a.with_catalog or a.postgres:
        from scripts.bench_stream import bench_streaming

        result = bench_streaming(a.n, a.dim, a.queries, a.recall, a.max_memory, a.with_catalog, a.postgres,
                                 a.seed, a.work)
        result.update(machine=f"{platform.machine()}, {os.cpu_count()} cores", faiss=faiss.__version__)
        print(json.dumps(result, indent=2))
        return

    result = bench(a.n, a.dim, a.queries, a.k, a.seed, a.recall, a.max_memory, a.mixed, a.filter_fraction, a.dupes,
                   a.torch_device)
    result.update(machine=f"{platform.machine()}, {os.cpu_count()} cores", faiss=faiss.__version__)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
