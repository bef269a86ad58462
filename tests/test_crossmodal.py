"""A tiny model trained in this session must really find the right things across modalities."""

from __future__ import annotations

import numpy as np

from retrieval import Query
from scripts.synthetic import CONCEPTS
from tests.conftest import caption_notes_and_pictures


def _concept_of(hit, samples) -> str:
    folder, manifest = samples
    return manifest[str(__import__("pathlib").Path(hit.path).relative_to(folder))]


def test_text_finds_the_right_pictures(trained_library, samples):
    top1 = prec2 = 0
    for c in CONCEPTS:
        label = f"{c.color} {c.shape}"
        hits = trained_library.search(f"a photo of a {label}", k=2, type="image")
        assert len(hits) == 2 and all(h.modality == "image" for h in hits)
        found = [_concept_of(h, samples) for h in hits]
        top1 += found[0] == label
        prec2 += sum(f == label for f in found)
    # 24 concepts, two pictures each: chance is 1/24 for top-1.
    assert top1 / len(CONCEPTS) >= 0.85, top1
    assert prec2 / (2 * len(CONCEPTS)) >= 0.75, prec2
    # One score orders the list, best first; the cosine beside it.
    hits = trained_library.search("a red circle", k=10)
    assert all(-1.0001 <= h.cosine <= 1.0001 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    semantic = trained_library.search("a red circle", k=10, type="image", mode="semantic")
    assert [h.score for h in semantic] == [h.cosine for h in semantic]  # one kind by meaning: the cosine


def test_image_finds_the_right_caption_document(trained_library, samples):
    folder, notes, pictures = caption_notes_and_pictures(samples)
    right = 0
    for rel, label in notes.items():
        q = Query(images=[str(folder / pictures[label])])
        hits = [h for h in trained_library.search(q, k=20, type="text") if "/notes/note-" in h.path]
        right += hits[0].path.endswith(rel)
    assert right >= len(notes) - 1, f"{right}/{len(notes)}"


def test_composite_query_moves_results(trained_library, samples):
    folder, manifest = samples
    blue_squares = [rel for rel, label in manifest.items() if label == "blue square"]

    def rank_of_blue_squares(q: Query) -> float:
        hits = trained_library.search(q, k=48, type="image")
        ranks = [i for i, h in enumerate(hits) if _concept_of(h, samples) == "blue square"]
        return float(np.mean(ranks))

    text_only = rank_of_blue_squares(Query(texts=["a red circle"]))
    composite = rank_of_blue_squares(Query(texts=["a red circle"], images=[str(folder / blue_squares[0])], media_weight=0.7))
    assert composite < text_only, (composite, text_only)
    # More image weight pulls harder toward the picture.
    light = rank_of_blue_squares(Query(texts=["a red circle"], images=[str(folder / blue_squares[0])], media_weight=0.2))
    assert composite <= light

    # A negative term pushes its concept down.
    def red_in_top(q: Query) -> int:
        return sum("red" in _concept_of(h, samples) for h in trained_library.search(q, k=8, type="image"))

    assert red_in_top(Query(texts=["a circle"], negatives=["red"], negative_weight=0.8)) < red_in_top(Query(texts=["a circle"]))
