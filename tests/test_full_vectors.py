"""The full-precision vectors kept beside the index (indexer.full_vectors) and index builds that
stream from them (autoindex.build_streaming): the same index as one built in memory, in bounded
memory, and a store cut back to its last commit after a crash."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from indexer import autoindex
from indexer.full_vectors import FullVectors
from scripts.bench_search import clip_like


def _data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, 16)).astype(np.float32)
    basis = np.linalg.qr(rng.standard_normal((d, 16)))[0].T.astype(np.float32)
    return np.arange(1, n + 1, dtype=np.int64) * 3, clip_like(n, d, rng, centres, basis)


class _Session:
    """Just what FullVectors.stage/of ask of a session (meta in a dict)."""

    def __init__(self) -> None:
        self.meta: dict = {}


@pytest.fixture()
def meta(monkeypatch):
    store: dict = {}
    monkeypatch.setattr("indexer.full_vectors.set_meta", lambda s, k, v: store.__setitem__(k, v))
    monkeypatch.setattr("indexer.full_vectors.get_meta", lambda s, k, default=None: store.get(k, default))
    return store


def test_rows_survive_commits_and_a_crash_cuts_the_uncommitted_tail(tmp_path, meta):
    ids, xb = _data(1000, 32)
    full = FullVectors(tmp_path, 32)
    full.append(xb[:600], ids[:600])
    full.stage(None)
    full.committed_now()
    full.append(xb[600:], ids[600:])  # appended, then the run is killed before its commit
    again = FullVectors.of(tmp_path, None, 32)
    assert again.rows == 600
    again.cut_uncommitted()
    assert (tmp_path / "full-1.vec").stat().st_size == 600 * 32 * 2
    got_ids, got = zip(*again.chunks(rows=256))
    assert np.array_equal(np.concatenate(got_ids), ids[:600])
    assert np.abs(np.concatenate(got) - xb[:600]).max() < 1e-3  # float16
    # Only live ids, and each id's last row (an item written again after a crash has two).
    again.append(xb[:10] * 0 + 1 / np.sqrt(32), ids[:10])
    live = np.sort(ids[5:600])
    got_ids, got = zip(*again.chunks(live, rows=100))
    got_ids, got = np.concatenate(got_ids), np.concatenate(got)
    assert sorted(got_ids.tolist()) == live.tolist()
    rewritten = got[np.isin(got_ids, ids[5:10])]
    assert np.allclose(rewritten, 1 / np.sqrt(32), atol=1e-3)


def test_a_streaming_build_equals_one_in_memory(tmp_path, meta):
    ids, xb = _data(30_000, 64)
    full = FullVectors(tmp_path, 64, dtype="float32")
    for start in range(0, len(ids), 7000):
        full.append(xb[start:start + 7000], ids[start:start + 7000])
    source = full.view(ids)
    factory = "IVF128,SQ8"
    in_memory, t_mem = autoindex.build(factory, ids, xb, 0.95)
    streamed, t_str = autoindex.build_streaming(factory, source, 0.95)
    assert np.array_equal(np.sort(streamed.ids()), np.sort(in_memory.ids()))
    # Exact neighbours chunk by chunk equal those of the whole matrix.
    xq = xb[:50]
    whole = ids[autoindex.exact_neighbours(xq, xb, 11)]
    chunked = autoindex.exact_neighbours_chunked(xq, source.chunks(rows=4000), 11)
    assert np.array_equal(whole, chunked)
    # Both meet the target on fresh queries, with nprobe within a factor of two.
    rng = np.random.default_rng(5)
    fresh = xb[rng.choice(len(xb), 300, replace=False)] + 0.01 * rng.standard_normal((300, 64)).astype(np.float32)
    fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
    truth = ids[autoindex.exact_neighbours(fresh, xb, 10)]
    for index in (in_memory, streamed):
        _, got = index.search(fresh, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)])
        assert recall >= 0.93, recall
    assert t_str["nprobe"] in (t_mem["nprobe"] // 2, t_mem["nprobe"], t_mem["nprobe"] * 2)
    assert abs(t_str["recall_at_10"] - t_mem["recall_at_10"]) < 0.03


def _peak_of_build(tmp_path, n: int) -> tuple[int, int]:
    ids, xb = _data(n, 256, seed=n)
    full = FullVectors(tmp_path / str(n), 256)
    (tmp_path / str(n)).mkdir()
    full.append(xb, ids)
    matrix = xb.nbytes
    del xb
    tracemalloc.start()
    try:
        autoindex.build_streaming("IVF256,SQ8", full.view(ids, rows=8192), 0.9)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, matrix


def test_a_streaming_build_holds_a_chunk_not_the_matrix(tmp_path, meta):
    """numpy's own buffers (a chunk, the training sample, the tuning queries; FAISS's are the
    index itself) stay the same size when the library doubles, and well under its matrix."""
    small, _ = _peak_of_build(tmp_path, 60_000)
    large, matrix = _peak_of_build(tmp_path, 120_000)
    assert large < 1.15 * small + 2_000_000, (small, large)  # the ids' arrays grow, a little
    assert large < 0.35 * matrix, (large, matrix)


def test_a_library_keeps_its_vectors_at_full_precision_and_rebuilds_from_them(tmp_path, random_model, samples,
                                                                              monkeypatch):
    """Every item's vector is kept beside the index as it is written; rebuilds and retrains of
    an index already compressed to SQ8 read them, not SQ8's reconstructions; a deleted item's
    row stays on disk but leaves every rebuild."""
    import shutil

    from sqlalchemy import select

    from indexer.catalog import Item
    from retrieval import Library

    monkeypatch.setattr(autoindex, "FLAT_MAX", 20)
    work = tmp_path / "media"
    shutil.copytree(samples[0], work)
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([work])
    assert lib.stats()["index_type"].endswith(",SQ8")
    d = lib.vectors().d
    with lib.Session() as s:
        full = FullVectors.of(lib.path, s, d)
        items = np.asarray(sorted(s.scalars(select(Item.id))), np.int64)
    assert full is not None and full.complete and full.rows == len(items)
    ids, kept = map(np.concatenate, zip(*full.chunks(items)))
    codes = lib.vectors().reconstruct_many(ids)
    assert 0 < np.abs(kept - codes).max() < 0.05  # SQ8 is within its quantisation step of them, not equal
    # What a rebuild or a retrain of this index reads: the kept vectors.
    victim = sorted(work.rglob("*.png"))[0]
    victim.unlink()
    again = Library(tmp_path / "lib")
    again.index()
    with again.Session() as s:
        live = np.asarray(sorted(s.scalars(select(Item.id))), np.int64)
        again.store.vectors(writable=True)
        src_ids, src = map(np.concatenate, zip(*again.policy._source(s).chunks()))
    assert len(live) == len(items) - 1 and sorted(src_ids.tolist()) == live.tolist()
    by_id = dict(zip(ids.tolist(), kept))
    assert max(np.abs(by_id[i] - v).max() for i, v in zip(src_ids.tolist(), src)) == 0.0
    assert again.check().ok


_BUILD_IN_CHILD = """
import json, resource, sys
from pathlib import Path
import numpy as np
from indexer import autoindex
from indexer.full_vectors import FullVectors
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
folder, n, d = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
full = FullVectors(folder, d, rows=n)
autoindex.exact_neighbours(np.ones((1, d), np.float32), np.ones((2, d), np.float32), 1)  # faiss, BLAS loaded
base = rss()
index, _ = autoindex.build_streaming("IVF1024,SQ8", full.view(np.arange(1, n + 1, dtype=np.int64)), 0.95)
with open("/proc/self/status") as f:  # this process's own peak (ru_maxrss keeps the forking parent's)
    peak = int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) * 1024 - base
index.save(folder / "built.faiss")
print(json.dumps({"peak": peak, "index": (folder / "built.faiss").stat().st_size}))
"""


def test_a_streaming_build_takes_the_index_and_a_bounded_working_set(tmp_path):
    """The whole process's memory (FAISS's too), measured in a fresh one: a library twice as large
    costs only its larger index, and the peak stays far under the float32 matrix (what
    autoindex.build held before), within a budget of index + training sample + chunks."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    d, peaks = 256, {}
    for n in (150_000, 300_000):
        folder = tmp_path / str(n)
        folder.mkdir()
        ids, x = _data(n, d, seed=n)
        full = FullVectors(folder, d)
        full.append(x, np.arange(1, n + 1))
        full.committed_now()
        del x
        out = subprocess.run([sys.executable, "-c", _BUILD_IN_CHILD, str(folder), str(n), str(d)], check=True,
                             capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, timeout=600)
        peaks[n] = json.loads(out.stdout.strip().splitlines()[-1])
    small, large = peaks[150_000], peaks[300_000]
    sample = 39 * 1024 * d * 4  # FAISS's 39 training points a list, float32
    budget = large["index"] + 3 * sample + 64 * 2**20  # sample, its residuals, k-means; a few chunks
    assert large["peak"] <= budget, (large, budget)
    assert large["peak"] < 0.75 * 300_000 * d * 4, large
    assert large["peak"] - small["peak"] <= 1.5 * (large["index"] - small["index"]) + 16 * 2**20, peaks
