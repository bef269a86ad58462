"""Searching one modality, or mixing them, when one of them is rare: the work follows the
modality's own items, and the calibration neither favours a tiny modality nor goes stale."""

from __future__ import annotations

import random

import pytest

from retrieval import Library
from scripts.synthetic import CONCEPTS, draw


@pytest.fixture
def many_pictures_one_note(tmp_path, random_model):
    media = tmp_path / "media"
    media.mkdir()
    rng = random.Random(0)
    for i in range(240):
        draw(CONCEPTS[i % len(CONCEPTS)], rng, size=64).save(media / f"{i:03d}.png")
    (media / "note.txt").write_text("a note about a green star", encoding="utf-8")
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    assert lib.index([media]).new == 241
    return lib


def test_a_rare_modality_is_found_without_ranking_the_library(many_pictures_one_note, monkeypatch):
    import indexer.vectors
    import retrieval.search

    lib = many_pictures_one_note
    loaded: list[int] = []
    ranked: list[int] = []
    real_rows, real_search = retrieval.search.load_rows, indexer.vectors.VectorIndex.search

    def rows(session, ids):
        ids = list(ids)
        loaded.append(len(ids))
        return real_rows(session, ids)

    def search(self, xq, k, nprobe=None):
        ranked.append(k)
        return real_search(self, xq, k, nprobe)

    monkeypatch.setattr(retrieval.search, "load_rows", rows)
    monkeypatch.setattr(indexer.vectors.VectorIndex, "search", search)
    hits = lib.search("a green star", k=10, type="text", mode="semantic")  # the vector side's cost
    assert [h.modality for h in hits] == ["text"]  # the one there is, and the search stops there
    assert loaded == [1] and ranked == []  # one row loaded; the 240 pictures never ranked for it
    loaded.clear()
    mixed = lib.search("a green star", k=10, mode="semantic")
    assert len(mixed) == 10
    assert loaded == [10] and ranked == []  # each modality ranks its own best; rows of the page only


def test_a_tiny_modality_does_not_come_first_by_construction(tmp_path, trained_model):
    """One unrelated note among pictures: compared with the pictures its text->text cosine would
    look extraordinary; centred on its own kind it is ordinary, and the red circle comes first."""
    from tests.conftest import index_pictures_and_note

    lib, _ = index_pictures_and_note(tmp_path, trained_model, pictures=24, note="a green star")
    for query in ("a photo of a green star", "a photo of a red circle", "a blue square"):
        hits = lib.search(query, k=5, mode="semantic")  # calibration is the meaning side's
        assert hits[0].modality == "image", [(h.modality, h.calibrated) for h in hits]
        note = next(h for h in lib.search(query, k=25, mode="semantic") if h.modality == "text")
        assert note.calibrated == pytest.approx(0.0, abs=1e-6)  # its own kind's mean: one item


def test_the_calibration_follows_changes_of_the_same_size(tmp_path, random_model):
    """A run that removes one picture and adds another keeps the index's size; the calibration of
    a long-lived view must still follow the new contents, as a fresh view's does."""
    media = tmp_path / "media"
    media.mkdir()
    rng = random.Random(1)
    for i in range(20):
        draw(CONCEPTS[i], rng, size=64).save(media / f"{i}.png")
    (media / "note.txt").write_text("a red circle", encoding="utf-8")
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([media])

    def calibrated(view: Library) -> dict[str, float]:
        return {h.path: round(h.calibrated, 5) for h in view.search("a red circle", k=30)}

    before = calibrated(lib)
    (media / "3.png").unlink()
    draw(CONCEPTS[23], rng, size=64).save(media / "new.png")
    report = lib.index([media])
    assert (report.new, report.removed) == (1, 1) and lib.vectors().ntotal == 21
    assert calibrated(lib) == calibrated(Library(tmp_path / "lib")) != before
