"""People: faces found by index runs in real photos of real people and in a video's shots,
grouped, named, merged, taken off, forgotten; searched by person and by face; checked; on
SQLite and PostgreSQL; through the CLI and the HTTP API. The user's operations on people are
also tested on synthetic descriptors (no face model needed for those)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts.bench_people import synthetic_faces
from tests.conftest import run_xmr

OBAMA = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"]


def _folder(base: Path, photos: Path) -> Path:
    """The photos, a picture without a face, and a video whose middle shot shows Obama."""
    from scripts.synthetic import CONCEPTS, draw
    from scripts.synthetic_video import Scene, make_video
    import random

    folder = base / "media"
    folder.mkdir()
    for name in [*OBAMA, "biden.jpg"]:
        shutil.copy(photos / name, folder / name)
    draw(CONCEPTS[0], random.Random(0)).save(folder / "shape.png")
    portrait = Image.open(photos / "obama.jpg")
    still = portrait.crop((0, 0, portrait.width, portrait.width * 3 // 4))  # 4:3, as the video's frames
    make_video(folder / "talk.mp4", [Scene(CONCEPTS[1], 3.0), Scene(CONCEPTS[1], 3.0, picture=still),
                                     Scene(CONCEPTS[2], 3.0)], size=(320, 240), audio=False)
    return folder


def _xmr(lib: list[str], *args: str, check: bool = True):
    return run_xmr(*lib, *args, check=check)


def _people(lib: list[str]) -> list[dict]:
    return json.loads(_xmr(lib, "people", "--json").stdout)


def test_faces_people_and_searches_through_the_cli(tmp_path, face_photos, random_model, catalog_db):
    folder = _folder(tmp_path, face_photos)
    lib = ["--library", str(tmp_path / "lib"), *(["--db", catalog_db] if catalog_db else [])]
    out = _xmr(lib, "index", str(folder), "--model", random_model, "--no-progress")
    assert "faces found" in out.stdout + out.stderr
    people = _people(lib)
    # Two people, grouped right: Obama in five photos and the video, Biden in one photo.
    assert sorted(p["faces"] for p in people) == [1, 6]
    obama = next(p for p in people if p["faces"] == 6)
    biden = next(p for p in people if p["faces"] == 1)
    assert sorted(Path(f).name for f in obama["files"]) == sorted([*OBAMA, "talk.mp4"])
    assert [Path(f).name for f in biden["files"]] == ["biden.jpg"] and obama["name"] is None
    _xmr(lib, "people", "name", str(obama["id"]), "Barack Obama")
    # --person (a whole name, or one word of it): his pictures, and the video's moment he is seen in.
    hits = json.loads(_xmr(lib, "search", "a man", "--person", "obama", "-k", "20", "--json").stdout)
    assert sorted({Path(h["path"]).name for h in hits}) == sorted([*OBAMA, "talk.mp4"])
    moment = next(h for h in hits if h["modality"] == "video")
    assert 2.5 <= moment["start"] <= 3.5 and 5.5 <= moment["end"] <= 6.5, moment
    assert all(f["name"] == "Barack Obama" for h in hits for f in h["faces"])
    typed = json.loads(_xmr(lib, "search", "person:\"barack obama\" a man", "-k", "20", "--json").stdout)
    assert {h["item_id"] for h in typed} == {h["item_id"] for h in hits}
    bad = _xmr(lib, "search", "a man", "--person", "Anna", check=False)
    assert bad.returncode != 0 and "no person named 'Anna'" in bad.stderr and "Traceback" not in bad.stderr
    # --face: a photo not in the library (32bit.png) finds his pictures first; Biden's not at all.
    by_face = json.loads(_xmr(lib, "search", "--face", str(face_photos / "32bit.png"), "-k", "20", "--json").stdout)
    assert {Path(h["path"]).name for h in by_face} == {*OBAMA, "talk.mp4"}
    assert Path(by_face[0]["path"]).name == "obama2.jpg" and by_face[0]["score"] > 0.99  # the same photo
    with_text = json.loads(_xmr(lib, "search", "a man", "--face", str(face_photos / "biden.jpg"), "--json").stdout)
    assert [Path(h["path"]).name for h in with_text] == ["biden.jpg"]
    none = _xmr(lib, "search", "--face", str(folder / "shape.png"), check=False)
    assert none.returncode != 0 and "no face found" in none.stderr
    # Stats and check count and verify them.
    stats = json.loads(_xmr(lib, "stats", "--json").stdout)
    assert (stats["faces"], stats["people"], stats["people_named"]) == (7, 2, 1)
    assert _xmr(lib, "check").returncode == 0
    # Merge, then forget: the descriptors and thumbnails go, and the faces' index follows.
    _xmr(lib, "people", "merge", "barack", str(biden["id"]))
    assert [(p["name"], p["faces"]) for p in _people(lib)] == [("Barack Obama", 7)]
    out = _xmr(lib, "people", "forget", "Barack Obama")
    assert "7 faces deleted" in out.stdout
    assert _people(lib) == [] and json.loads(_xmr(lib, "stats", "--json").stdout)["faces"] == 0
    gone = _xmr(lib, "search", "--face", str(face_photos / "biden.jpg"), "--json")
    assert json.loads(gone.stdout) == []
    assert _xmr(lib, "check").returncode == 0
    # A later run does not look for them again (the files are unchanged).
    _xmr(lib, "index", "--no-progress")
    assert _people(lib) == []


def test_faces_off_remembered_and_caught_up_later(tmp_path, face_photos, random_model):
    folder = tmp_path / "media"
    folder.mkdir()
    for name in ("obama.jpg", "obama3.jpg", "biden.jpg"):
        shutil.copy(face_photos / name, folder / name)
    lib = ["--library", str(tmp_path / "lib")]
    _xmr(lib, "index", str(folder), "--model", random_model, "--no-faces", "--no-progress")
    _xmr(lib, "index", "--no-progress")  # remembered: still off
    assert _people(lib) == []
    assert "faces" not in _xmr(lib, "check").stdout
    from retrieval import Library

    with Library(tmp_path / "lib") as library:
        before = library.vectors().ids().tolist()
    out = _xmr(lib, "index", "--faces", "--no-progress")
    assert "3 faces found" in out.stdout + out.stderr and "0 items encoded" in out.stdout + out.stderr
    with Library(tmp_path / "lib") as library:
        assert library.vectors().ids().tolist() == before  # nothing else was encoded again
    assert sorted(p["faces"] for p in _people(lib)) == [1, 2]
    # The faces' index is made from the catalog: deleted, `check` says so and `--repair` remakes it.
    for f in (tmp_path / "lib").glob("faces-*.faiss"):
        f.unlink()
    assert _xmr(lib, "check", check=False).returncode != 0
    assert "faces' index brought in step: 3 added" in _xmr(lib, "check", "--repair").stdout
    assert _xmr(lib, "check").returncode == 0


def _synthetic_library(tmp_path, random_model, faces_per_file: list[np.ndarray]):
    """A library whose pictures hold the given descriptors (rows written as an index run does)."""
    from indexer import face_index, people_store
    from indexer.catalog import File, Item
    from indexer.face_catalog import FaceRow
    from retrieval import Library

    lib = Library(tmp_path / "lib", model=random_model, create=True)
    thumb = bytes(range(16))
    with lib.store.Session() as s:
        for n, descriptors in enumerate(faces_per_file):
            f = File(path=f"/photos/{n}.jpg", modality="image", size=1, mtime_ns=1, phash=f"{n:064x}", faces_seen=1)
            s.add(f)
            s.flush()
            item = Item(file_id=f.id, modality="image", chunk=0, embedder="image")
            s.add(item)
            s.flush()
            s.add_all(FaceRow(file_id=f.id, item_id=item.id, left=0.1, top=0.1, width=0.2, height=0.2, score=1.0,
                              descriptor=d.astype(np.float32).tobytes(), thumbnail=thumb) for d in descriptors)
        s.commit()
        people_store.group_new_faces(s)
        s.commit()
        face_index.sync(lib.store.path, s)
    return lib


def test_people_operations_on_synthetic_faces(tmp_path, random_model):
    from indexer import people_store
    from indexer.face_catalog import FaceRefusal, FaceRow
    from retrieval.errors import NotFoundError, UsageError

    x, truth = synthetic_faces(people=3, per_person=4, seed=5)
    lib = _synthetic_library(tmp_path, random_model, [x[i:i + 1] for i in range(len(x))])
    people = lib.people.list()
    assert sorted(p["faces"] for p in people) == [4, 4, 4]
    files_of = {p["id"]: {int(Path(f).stem) for f in p["files"]} for p in people}
    assert sorted(sorted(truth[list(fs)].tolist()) for fs in files_of.values()) == [[0] * 4, [1] * 4, [2] * 4]
    a, b, c = (p["id"] for p in people)
    lib.people.name(a, "Anna")
    with pytest.raises(UsageError, match="already person"):
        lib.people.name(b, "anna")
    with pytest.raises(UsageError, match="a letter"):
        lib.people.name(b, "42")
    with pytest.raises(NotFoundError):
        lib.people.name(999, "Zed")
    # A face taken off Anna is never given back to her, even when new faces of hers arrive.
    face = lib.people.one("anna")
    with lib.store.Session() as s:
        taken = s.query(FaceRow).filter(FaceRow.person_id == a).first().id
    assert lib.people.unassign(taken) == a
    with lib.store.Session() as s:
        assert s.get(FaceRow, taken).person_id not in (a, None)
        assert s.get(FaceRefusal, (taken, a)) is not None
        people_store.group_new_faces(s)
        s.commit()
        assert s.get(FaceRow, taken).person_id != a
    assert lib.people.one("anna")["faces"] == face["faces"] - 1
    # Merge: one person, the name kept; the refusal follows the faces.
    kept = lib.people.merge("Anna", b)
    assert kept == {"id": a, "name": "Anna"}
    with pytest.raises(NotFoundError):
        lib.people.one(b)
    # Forget: the person, their faces' rows and their vectors go for good.
    n = lib.people.one(c)["faces"]
    assert lib.people.forget(c)["faces"] == n
    from indexer import face_index

    with lib.store.Session() as s:
        assert s.query(FaceRow).filter(FaceRow.person_id == c).count() == 0
        ids = set(face_index.load(lib.store.path, s).ids().tolist())
        assert ids == {f.id for f in s.query(FaceRow)}
    with pytest.raises(NotFoundError):
        lib.people.one(c)


def test_the_people_api(tmp_path, random_model):
    from tests.test_server_api import make_client

    x, _ = synthetic_faces(people=2, per_person=3, seed=8)
    lib = _synthetic_library(tmp_path, random_model, [x[i:i + 1] for i in range(len(x))])
    lib.close()
    client, _ = make_client(tmp_path / "lib")
    people = client.get("/api/people").json()["people"]
    assert sorted(p["faces"] for p in people) == [3, 3]
    first = people[0]
    thumb = client.get(first["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert client.patch(f"/api/people/{first['id']}", json={"name": "Anna"}).json() == {"id": first["id"], "name": "Anna"}
    hits = client.get("/api/people/anna/hits").json()["hits"]
    assert len(hits) == 3 and all(h["faces"][0]["name"] == "Anna" for h in hits)
    assert client.get("/api/people/nobody").status_code == 404
    assert client.patch(f"/api/people/{people[1]['id']}", json={"name": "ANNA"}).status_code == 400
    face = hits[0]["faces"][0]["id"]
    assert client.post(f"/api/faces/{face}/unassign").json()["left"] == first["id"]
    assert client.get("/api/people/anna").json()["faces"] == 2
    merged = client.post(f"/api/people/anna/merge", json={"other": str(people[1]["id"])}).json()
    assert merged["name"] == "Anna"
    gone = client.delete("/api/people/anna").json()
    assert gone["name"] == "Anna" and gone["faces"] >= 5
    assert client.get("/api/faces/999999/thumbnail").status_code == 404
    # Another origin may not change people (the page's own origin may).
    refused = client.patch(f"/api/people/{people[1]['id']}", json={"name": "X"}, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403
