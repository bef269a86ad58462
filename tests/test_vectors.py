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
    with pytest.raises(FaissMissingError, match=r"xmr\[cpu\].*faiss-cpu.*xmr\[gpu\].*faiss-gpu-cu12.*xmr\[gpu-cu13\].*faiss-gpu-cu13-cuvs"):
        import_faiss()


@pytest.mark.parametrize("kind", ["flat", "ivf-exact", "ivf-selector"])
def test_subset_search_equals_brute_force_over_the_subset(kind, monkeypatch):
    """search_subset ranks only the given ids, exactly as numpy would over those rows (the IVF
    selector path with every list probed)."""
    import indexer.subsets

    rng = np.random.default_rng(3)
    d, n = 16, 3000
    xb, xq = _unit(rng, n, d), _unit(rng, 5, d)
    ids = np.arange(100, 100 + n, dtype=np.int64)
    if kind == "flat":
        vi = VectorIndex.create(d)
        vi.add(xb, ids)
    else:
        vi = VectorIndex.build("IVF16,Flat", xb, ids)
        vi.nprobe = 16  # every list: the selector path is then exact too
        if kind == "ivf-selector":
            monkeypatch.setattr(indexer.subsets, "SUBSET_EXACT_MAX", 10)
    for size in (7, 900, 2500, 2500):  # rare, some, most (twice: the kept selector)
        subset = np.sort(rng.choice(ids, size, replace=False))
        D, I = vi.search_subset(xq, 10, vi.present(subset))
        rows = subset - 100
        sims = xq @ xb[rows].T
        ref = np.argsort(-sims, axis=1)[:, : min(10, size)]
        assert (I == subset[ref]).all(), (kind, size)
        assert np.allclose(D, np.take_along_axis(sims, ref, 1), atol=1e-5)
    assert vi.present(np.array([5, 100, 99999, 3099], np.int64)).tolist() == [100, 3099]
    version = vi.version
    vi.remove([100])
    assert vi.version > version and vi.present(np.array([100], np.int64)).tolist() == []


def test_gpu_copy_limits_and_uploads(monkeypatch):
    """With a GPU (here a stand-in for faiss's GPU calls, which this machine cannot run): k and
    nprobe stay within what GPU indexes accept (a larger k is answered on the CPU), and changing
    nprobe sets it on the copy instead of uploading the index again; new vectors re-upload."""
    import faiss

    uploads, searched, nprobes = [], [], []

    class FakeGpuIndex:
        def __init__(self, cpu):
            self.cpu = faiss.clone_index(cpu)

        def search(self, xq, k):
            searched.append(k)
            return self.cpu.search(xq, k)

    class FakeParameterSpace:
        def set_index_parameter(self, index, name, value):
            assert name == "nprobe"
            nprobes.append(value)
            faiss.extract_index_ivf(index.cpu).nprobe = value

    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", lambda res, dev, index: uploads.append(dev) or FakeGpuIndex(index), raising=False)
    monkeypatch.setattr(faiss, "GpuParameterSpace", FakeParameterSpace, raising=False)

    rng = np.random.default_rng(4)
    xb = _unit(rng, 5000, 16)
    vi = VectorIndex.build("IVF64,Flat", xb, np.arange(5000))
    assert vi.use_gpu(0)
    D, I = vi.search(xb[:1], 10)
    assert I[0, 0] == 0 and uploads == [0] and searched == [10]
    vi.nprobe = 4000  # more than a GPU index takes
    vi.search(xb[:1], 10, nprobe=8)
    assert uploads == [0] and nprobes[-1] == 8 and 4000 not in nprobes and max(nprobes) <= 2048
    D, I = vi.search(xb[:1], 3000)  # over the GPU's k: the CPU answers
    assert searched == [10, 10] and I.shape == (1, 3000) and I[0, 0] == 0
    vi.add(_unit(rng, 1, 16), [5000])
    vi.search(xb[:1], 10)
    assert uploads == [0, 0]  # new vectors: one new upload


def test_several_subsets_at_once_equal_one_at_a_time():
    rng = np.random.default_rng(5)
    xb, xq = _unit(rng, 2000, 16), _unit(rng, 1, 16)
    vi = VectorIndex.create(16)
    vi.add(xb, np.arange(2000) * 7)
    ids = vi.ids()
    parts = [np.sort(ids[:3]), np.sort(ids[3:400]), np.sort(ids[400:]), ids[:0]]
    together = vi.search_subsets(xq, 10, parts)
    for part, (D, I) in zip(parts, together):
        D1, I1 = vi.search_subset(xq, 10, part)
        assert (I == I1).all() and np.allclose(D, D1)


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat"])
def test_the_torch_copy_searches_exactly_like_the_cpu(factory):
    """Without faiss-gpu a GPU searches through torch (indexer.gpu.TorchCopy); the same code on
    the CPU here must give the exact search's ids and scores, and follow changes."""
    from indexer.gpu import TorchCopy

    rng = np.random.default_rng(5)
    xb = rng.standard_normal((3000, 32)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    ids = np.arange(3000, dtype=np.int64) * 7 + 3
    vi = VectorIndex.build(factory, xb, ids) if factory != "Flat" else VectorIndex.create(32, "Flat")
    if factory == "Flat":
        vi.add(xb, ids)
    vi._gpu = TorchCopy("cpu")
    xq = xb[:20] + 0.05 * rng.standard_normal((20, 32)).astype(np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    D, I = vi.search(xq, 10)
    ref = xq @ xb.T
    want = np.argsort(-ref, axis=1)[:, :10]
    assert (I == ids[want]).all()  # exact, also where the index itself is an IVF
    assert np.allclose(D, np.take_along_axis(ref, want, 1), atol=1e-5)
    assert vi._gpu.uploads == 1
    vi.add(xq[:1], [99999])  # a change: uploaded again at the next search
    D2, I2 = vi.search(xq[:1], 1)
    assert I2[0, 0] == 99999 and vi._gpu.uploads == 2
