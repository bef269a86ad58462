"""The FAISS layer against numpy brute force, on seeded data."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.vectors import VectorIndex
from retrieval.errors import UsageError


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_search_equals_numpy_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    d, n, k = 32, 2000, 10
    xb, xq = _unit(rng, n, d), _unit(rng, 50, d)
    ids = rng.choice(10**9, size=n, replace=False).astype(np.int64)
    vi = VectorIndex.create(d)
    vi.add(xb, ids)
    D, I = vi.search(xq, k)
    sims = xq @ xb.T
    ref = np.argsort(-sims, axis=1)[:, :k]
    assert (I == ids[ref]).all()
    assert np.allclose(D, np.take_along_axis(sims, ref, 1), atol=1e-5)

    # Saved and loaded (also memory-mapped), the answers are the same.
    path = tmp_path / "v.faiss"
    vi.save(path)
    assert not list(tmp_path.glob(".*tmp"))
    for mmap in (False, True):
        again = VectorIndex.load(path, vi.factory, mmap=mmap)
        D2, I2 = again.search(xq, k)
        assert (I2 == I).all() and np.allclose(D2, D)


def test_remove_ids_and_short_results():
    rng = np.random.default_rng(1)
    xb = _unit(rng, 5, 8)
    vi = VectorIndex.create(8)
    vi.add(xb, [10, 11, 12, 13, 14])
    assert vi.remove([11, 13, 99]) == 2
    assert sorted(vi.ids().tolist()) == [10, 12, 14]
    D, I = vi.search(xb[1:2], 10)  # asks for more than exist: no -1 padding beyond ntotal
    assert sorted(I[0].tolist()) == [10, 12, 14]
    assert np.allclose(vi.reconstruct(12), xb[2])


def test_bad_vectors_and_factories():
    vi = VectorIndex.create(8)
    with pytest.raises(ValueError):
        vi.add(np.zeros((2, 7), np.float32), [1, 2])
    with pytest.raises(ValueError):
        vi.add(np.zeros((2, 8), np.float32), [1])
    with pytest.raises(UsageError, match="factory"):
        VectorIndex.create(8, "NoSuchIndex")
    with pytest.raises(UsageError, match="remove"):
        VectorIndex.create(8, "HNSW32")
    with pytest.raises(UsageError, match="training"):
        VectorIndex.create(8, "IVF16,Flat")


def test_gpu_path_is_guarded():
    """Without GPUs (faiss-cpu, or faiss-gpu on a machine with none) search stays on the CPU."""
    import faiss

    vi = VectorIndex.create(8)
    vi.add(np.eye(8, dtype=np.float32), np.arange(8))
    has_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    assert vi.use_gpu() is has_gpu
    D, I = vi.search(np.eye(8, dtype=np.float32)[:1], 1)
    assert I[0, 0] == 0 and D[0, 0] == pytest.approx(1.0)


def test_missing_faiss_names_both_extras(monkeypatch):
    import sys

    from indexer.vectors import import_faiss
    from retrieval.errors import FaissMissingError

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(FaissMissingError, match=r"xmr\[cpu\].*faiss-cpu.*xmr\[gpu\].*faiss-gpu"):
        import_faiss()
