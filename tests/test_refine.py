"""A compressed index (OPQ+PQ, chosen under a tight --max-memory) re-ranks its candidates with
the library's full-precision vectors (indexer.refine): the recall target is met where the codes
alone miss, and scores are the stored vectors' own."""

from __future__ import annotations

import numpy as np

from indexer import autoindex
from indexer.full_vectors import FullVectors
from scripts.bench_search import clip_like


def _store(tmp_path, n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((300, 16)).astype(np.float32)
    basis = np.linalg.qr(rng.standard_normal((d, 16)))[0].T.astype(np.float32)
    full = FullVectors(tmp_path, d)
    x = clip_like(n, d, rng, centres, basis)
    full.append(x, np.arange(1, n + 1) * 7)
    full.committed_now()
    return full, x, clip_like(200, d, rng, centres, basis)


def _recall(index, xq, truth) -> float:
    _, got = index.search(xq, 10)
    return float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth)]))


def test_a_pq_index_refined_from_the_kept_vectors_meets_the_target_the_codes_miss(tmp_path):
    n, d = 20_000, 64
    full, x, xq = _store(tmp_path, n, d)
    ids = np.arange(1, n + 1) * 7
    truth = ids[autoindex.exact_neighbours(xq, x, 10)]
    index, tuning = autoindex.build_streaming("OPQ8,IVF64,PQ8", full.view(ids), 0.95)
    assert index.refine is not None and tuning["recall_lower_bound"] >= 0.95
    refined = _recall(index, xq, truth)
    refine, index.refine = index.refine, None
    codes_only = _recall(index, xq, truth)
    index.refine = refine
    assert refined >= 0.95 and refined > codes_only + 0.1, (refined, codes_only)
    D, I = index.search(xq[:5], 10)
    exact = np.einsum("qkd,qd->qk", x[I // 7 - 1].astype(np.float16).astype(np.float32), xq[:5])
    assert np.allclose(D, exact, atol=1e-5)  # the kept (float16) vectors' scores, best first
    assert (np.diff(D, axis=1) <= 1e-7).all()


def test_a_library_whose_index_is_pq_searches_refined(tmp_path, random_model, samples, monkeypatch):
    """The library's own rebuild into a PQ index (what a tight budget chooses at 10k+ items;
    here forced for its 57) re-ranks with the kept vectors, in the writer and in a new reader:
    scores are the vectors' exact inner products (within float16's rounding)."""
    import shutil

    from retrieval import Library

    media = tmp_path / "media"
    shutil.copytree(samples[0], media)
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([media])
    monkeypatch.setattr(autoindex, "choose_factory", lambda *a, **k: "IVF4,PQ4x4")
    (media / "note.txt").write_text("a note that makes the run write", encoding="utf-8")
    lib.index([media])
    assert lib.store.factory.endswith("PQ4x4") and lib.store.loaded_vectors.refine is not None
    lib.close()
    again = Library(tmp_path / "lib")
    vecs = again.vectors()
    assert vecs.refine is not None
    q = again.encoder.encode_text(["a red circle"])
    D, I = vecs.search(q, 5)
    found, kept = vecs.refine.vectors(I[0])
    assert found.all() and np.allclose(D[0], kept @ q[0], atol=1e-5)
    assert again.check().ok
