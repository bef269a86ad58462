"""The index chooser: every index type it can pick finds what exact search finds, tuned to a recall target."""

from __future__ import annotations

import numpy as np
import pytest

from indexer import autoindex
from indexer.vectors import VectorIndex
from scripts.bench_search import clip_like

D = 64


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((D, 16)))[0].T.astype(np.float32)
    centres = rng.standard_normal((100, 16)).astype(np.float32)
    return clip_like(n, D, rng, centres, basis)


def test_choice_by_size_and_memory():
    assert autoindex.choose_factory(5_000, 512) == "Flat"
    assert autoindex.choose_factory(1_000_000, 512) == "IVF4096,SQ8"
    assert autoindex.choose_factory(1_000_000, 512, max_memory=400 * 10**6) == "IVF4096,SQ4"
    assert autoindex.choose_factory(1_000_000, 512, max_memory=100 * 10**6) == "OPQ64,IVF4096,PQ64"
    assert autoindex.choose_factory(5_000, 512, max_memory=3 * 10**6).startswith("IVF")  # flat would not fit
    with pytest.raises(Exception, match="too small"):
        autoindex.choose_factory(1_000_000, 512, max_memory=10**6)
    assert autoindex.nlist_for(1_000_000) == 4096
    assert autoindex.nlist_for(5_000) * 39 <= 5_000


# every kind the chooser returns for n = 12k, d = 64 under shrinking budgets
BUDGETS = {"Flat": None, "IVF": 12_000 * (D + 40), "SQ4": 12_000 * (D // 2 + 30), "PQ": 12_000 * (16 + 26)}


@pytest.fixture(scope="module")
def kinds():
    n = 12_000
    out = {}
    for name, budget in BUDGETS.items():
        factory = autoindex.choose_factory(n, D, budget, flat_max=20_000 if name == "Flat" else 1_000)
        out[name] = factory
    return out


def test_chooser_offers_each_kind(kinds):
    assert kinds["Flat"] == "Flat"
    assert kinds["IVF"].endswith(",SQ8")
    assert kinds["SQ4"].endswith(",SQ4")
    assert kinds["PQ"].startswith("OPQ")


@pytest.mark.parametrize("name", list(BUDGETS))
def test_same_top1_as_exact_on_easy_data(kinds, name):
    """Far-apart points, queries right next to them: every index must return that point first."""
    rng = np.random.default_rng(3)
    xb = rng.standard_normal((12_000, D)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    ids = np.arange(50_000, 62_000, dtype=np.int64)
    index, tuning = autoindex.build(kinds[name], ids, xb, target=0.95)
    pick = rng.choice(len(xb), 200, replace=False)
    xq = xb[pick] + 0.01 * rng.standard_normal((200, D)).astype(np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    exact = ids[autoindex.exact_neighbours(xq, xb, 1)[:, 0]]
    _, got = index.search(xq, 1)
    assert (got[:, 0] == exact).mean() == 1.0
    one = index.search(xq[:1], 1)[1][0, 0]  # the single-query path too
    assert one == exact[0]


@pytest.mark.parametrize("name", list(BUDGETS))
def test_recall_target_on_clustered_data(kinds, name):
    xb = clustered(12_000)
    ids = np.arange(12_000, dtype=np.int64) * 3 + 7
    index, tuning = autoindex.build(kinds[name], ids, xb, target=0.95)
    assert tuning["factory"] == kinds[name] and tuning["n_built"] == 12_000
    if name in ("Flat", "IVF"):
        assert tuning["recall_at_10"] >= 0.95
        if index.is_ivf:
            assert tuning["nprobe"] < index.nlist  # the target is met without probing everything
    else:
        # 4-bit and PQ codes lose too much to reach 0.95 at any nprobe; the tuner says so
        # instead of pretending (stats shows it), and still gets most neighbours right.
        assert tuning["recall_at_10"] >= 0.8
        if tuning["recall_at_10"] < 0.95:
            assert "not reached" in tuning["note"]
    # deletions keep working on every kind
    assert index.remove(ids[:100]) == 100
    assert index.ntotal == 11_900
    _, got = index.search(xb[:5], 10)
    assert not set(got.ravel()) & set(ids[:100].tolist())
    assert set(index.ids().tolist()) == set(ids[100:].tolist())
    sample_ids, sample = index.sample(50)
    assert set(sample_ids.tolist()) <= set(ids[100:].tolist())
    own = xb[np.searchsorted(ids, sample_ids)]
    assert np.min(np.sum(own * sample, axis=1)) > 0.9  # decoded vectors are close to the originals


def test_save_load_mmap_round_trip(tmp_path):
    xb = clustered(12_000, seed=2)
    ids = np.arange(12_000, dtype=np.int64)
    index, tuning = autoindex.build("IVF128,SQ8", ids, xb, target=0.95)
    index.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss", "IVF128,SQ8", mmap=True)
    assert loaded.mmapped and loaded.ntotal == 12_000
    loaded.nprobe = tuning["nprobe"]
    assert np.array_equal(loaded.search(xb[:20], 10)[1], index.search(xb[:20], 10)[1])
    flat = VectorIndex.create(D, "Flat")
    flat.add(xb, ids)
    flat.save(tmp_path / "f.faiss")
    mapped = VectorIndex.load(tmp_path / "f.faiss", "IDMap2,Flat", mmap=True)
    assert np.array_equal(mapped.search(xb[:3], 5)[1], flat.search(xb[:3], 5)[1])


def test_library_crosses_the_threshold_once_and_keeps_working(tmp_path, trained_model, samples, monkeypatch):
    """A library that outgrows exact search is rebuilt into IVF once; later runs add to it."""
    import shutil

    from retrieval import Library
    from tests.conftest import run_xmr

    monkeypatch.setattr(autoindex, "FLAT_MAX", 20)
    folder, _ = samples
    work = tmp_path / "media"
    shutil.copytree(folder, work)
    lib = Library(tmp_path / "lib", model=trained_model, create=True)
    lib.index([work])
    st = lib.stats()
    assert st["index_type"].startswith("IVF") and st["index_type"].endswith(",SQ8")
    t = st["index_tuning"]
    assert t["recall_at_10"] >= 0.95 and t["nprobe"] >= 1 and t["p50_ms"] > 0 and t["n_built"] == st["vectors"]
    first = lib.index_path.name
    # incremental after the switch: a deleted file leaves, a new one joins, no rebuild
    victim = sorted(p for p in work.rglob("*") if p.suffix.lower() in (".jpg", ".png"))[0]
    victim.unlink()
    (work / "extra.txt").write_text("a purple triangle on a white background")
    again = Library(tmp_path / "lib")
    report = again.index()
    assert report.removed == 1 and report.new == 1
    assert again.stats()["index_tuning"]["n_built"] == t["n_built"]  # not rebuilt
    assert again.check().ok
    # a modality filter still finds k items of a minority modality in an approximate index
    n_text = again.stats()["items_by_modality"]["text"]
    assert n_text < again.stats()["items"] / 3
    assert len(again.search("a note", k=n_text, type="text")) == n_text
    hits = again.search("a purple triangle on a white background", k=3, type="text")
    assert hits[0].path.endswith("extra.txt")
    assert not any(h.path == str(victim) for h in again.search("a red circle", k=100))
    assert again.index_path.name != first and not lib.path.joinpath(first).exists()  # a new file, the old one gone
    out = run_xmr("--library", str(tmp_path / "lib"), "stats", check=True).stdout
    assert "recall@10" in out and "nprobe" in out


def test_readers_map_large_indexes_and_writers_get_their_own_copy(tmp_path, random_model, samples, monkeypatch):
    import indexer.store
    from retrieval import Library

    monkeypatch.setattr(indexer.store, "MMAP_MIN_BYTES", 0)  # every index counts as large
    folder, _ = samples
    Library(tmp_path / "lib", model=random_model, create=True).index([folder])
    reader = Library(tmp_path / "lib")
    before = reader.search("a red circle", k=5)
    assert reader.vectors().mmapped
    in_memory = Library(tmp_path / "lib")
    assert not in_memory.vectors(writable=True).mmapped
    assert [h.item_id for h in in_memory.search("a red circle", k=5)] == [h.item_id for h in before]
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "n.txt").write_text("a note about a yellow square")
    reader.index([extra])  # the same object now writes: it must not write into the map
    assert not reader.vectors().mmapped
    assert reader.check().ok
    again = Library(tmp_path / "lib")
    assert again.search("a note about a yellow square", k=1, type="text")[0].path.endswith("n.txt")


def test_reconstruct_many_matches_single_reconstruct():
    xb = clustered(12_000, seed=4)
    ids = np.arange(12_000, dtype=np.int64) * 2 + 1
    index, _ = autoindex.build("IVF128,SQ8", ids, xb, target=0.9)
    pick = ids[[5, 500, 11_999]]
    many = index.reconstruct_many(pick)
    for row, i in zip(many, pick):
        assert np.allclose(row, index.reconstruct(int(i)), atol=1e-6)
    _, got = index.search(xb[:3], 3)  # the temporary direct map is gone again: search still works
    assert got[0, 0] == ids[0]


def test_an_ivf_index_is_retrained_when_the_library_grew_8x():
    base = clustered(12_000, seed=5)
    ids = np.arange(12_000, dtype=np.int64)
    index, tuning = autoindex.build("IVF128,SQ8", ids, base, target=0.9)
    policy = {"auto": True, "recall": 0.9, "max_memory": None}
    assert autoindex.wants_rebuild("IVF128,SQ8", 12_000, D, policy, tuning) is None
    assert autoindex.wants_rebuild("IVF128,SQ8", 50_000, D, policy, tuning) is None  # incremental
    grown = autoindex.wants_rebuild("IVF128,SQ8", 96_000, D, policy, tuning)
    assert grown is not None and grown.startswith("IVF") and grown != "IVF128,SQ8"
    assert autoindex.wants_rebuild("IVF128,SQ8", 4_000, D, policy, tuning) == "Flat"  # back below 10k
    assert autoindex.wants_rebuild("IDMap2,Flat", 25_000, D, policy, None).startswith("IVF")
    tight = {**policy, "max_memory": 12_000 * 50}
    assert autoindex.wants_rebuild("IVF128,SQ8", 12_000, D, tight, tuning).endswith("SQ4")  # the budget changed the code
    # a rebuild from an IVF index starts from its decoded vectors
    got_ids, got = index.all_vectors()
    assert sorted(got_ids.tolist()) == ids.tolist()
    order = np.argsort(got_ids)
    cos = np.sum(got[order] * base, axis=1)
    assert np.median(cos) > 0.999 and cos.min() > 0.95  # SQ8 codes: close, not exact
