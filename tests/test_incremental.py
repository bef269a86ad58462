"""Re-indexing: unchanged files are not re-encoded; modified, moved and deleted files are handled."""

from __future__ import annotations

import os
import random
import shutil

import numpy as np
import pytest
from sqlalchemy import select

from indexer.catalog import File, Item
from retrieval import Library
from scripts.synthetic import CONCEPTS, draw


@pytest.fixture
def media(tmp_path):
    folder = tmp_path / "media"
    (folder / "sub").mkdir(parents=True)
    rng = random.Random(0)
    for i in range(6):
        draw(CONCEPTS[i], rng).save(folder / f"img{i}.png")
    (folder / "sub" / "a.txt").write_text("a red circle on the table", encoding="utf-8")
    (folder / "sub" / "b.md").write_text("# notes\n\na blue square", encoding="utf-8")
    return folder


def _items(lib: Library) -> dict[str, list[int]]:
    with lib.Session() as s:
        out: dict[str, list[int]] = {}
        for path, item_id in s.execute(select(File.path, Item.id).join(Item).order_by(Item.id)):
            out.setdefault(path, []).append(item_id)
    return out


def _count_encodes(lib: Library, monkeypatch) -> dict[str, int]:
    calls = {"images": 0, "texts": 0}
    enc = lib.encoder
    real_img, real_txt = enc.encode_images, enc.encode_text

    def images(batch):
        calls["images"] += len(batch)
        return real_img(batch)

    def texts(batch):
        calls["texts"] += len(batch)
        return real_txt(batch)

    monkeypatch.setattr(enc, "encode_images", images)
    monkeypatch.setattr(enc, "encode_text", texts)
    return calls


def test_second_run_encodes_nothing(tmp_path, catalog_db, media, random_model, monkeypatch):
    lib = Library(tmp_path / "lib", db=catalog_db, model=random_model, create=True)
    first = lib.index([media])
    assert (first.new, first.skipped) == (8, 0)
    before = _items(lib)
    index_bytes = lib.index_path.read_bytes()

    calls = _count_encodes(lib, monkeypatch)
    second = lib.index([media])
    assert calls == {"images": 0, "texts": 0}
    assert (second.new, second.updated, second.moved, second.removed, second.unchanged) == (0, 0, 0, 0, 8)
    assert _items(lib) == before
    assert lib.index_path.read_bytes() == index_bytes

    # `xmr index` with no paths refreshes the folders indexed before.
    third = Library(tmp_path / "lib", db=catalog_db).index([])
    assert third.unchanged == 8


def test_modified_moved_deleted(tmp_path, catalog_db, media, random_model, monkeypatch):
    lib = Library(tmp_path / "lib", db=catalog_db, model=random_model, create=True)
    lib.index([media])
    before = _items(lib)
    vec_before = {p: lib.vectors().reconstruct(ids[0]) for p, ids in before.items()}

    # modified: new content, so new vectors
    note = media / "sub" / "a.txt"
    note.write_text("a completely different note about a green star", encoding="utf-8")
    os.utime(note, ns=(note.stat().st_mtime_ns + 10**9,) * 2)
    # moved into another folder: same content, so its vectors are kept
    (media / "moved").mkdir()
    shutil.move(media / "img1.png", media / "moved" / "renamed.png")
    # deleted
    (media / "img2.png").unlink()

    calls = _count_encodes(lib, monkeypatch)
    r = lib.index([media])
    assert (r.new, r.updated, r.moved, r.removed, r.unchanged) == (0, 1, 1, 1, 5)
    assert calls == {"images": 0, "texts": 1}  # only the modified note was encoded

    after = _items(lib)
    old_path, new_path = str(media / "img1.png"), str(media / "moved" / "renamed.png")
    assert after[new_path] == before[old_path]  # same item ids, so same vectors
    assert np.array_equal(lib.vectors().reconstruct(after[new_path][0]), vec_before[old_path])
    assert old_path not in after and str(media / "img2.png") not in after
    assert after[str(note)] != before[str(note)]
    assert not np.allclose(lib.vectors().reconstruct(after[str(note)][0]), vec_before[str(note)])

    # Deleted files are gone from the index and from results.
    assert sorted(lib.vectors().ids().tolist()) == sorted(i for ids in after.values() for i in ids)
    hits = lib.search("anything", k=50)
    assert {h.path for h in hits} == set(after)
    assert lib.check().ok


def test_hidden_files_and_folders_are_skipped(tmp_path, catalog_db, media, random_model):
    (media / ".hidden").mkdir()
    draw(CONCEPTS[0], random.Random(0)).save(media / ".hidden" / "x.png")
    draw(CONCEPTS[0], random.Random(0)).save(media / ".y.png")
    (media / "script.py").write_text("print('not media')")
    lib = Library(tmp_path / "lib", db=catalog_db, model=random_model, create=True)
    r = lib.index([media])
    assert r.new == 8 and r.skipped == 0
    rel = {os.path.relpath(p, media) for p in _items(lib)}
    assert not any(r.startswith(".") for r in rel) and "script.py" not in rel and len(rel) == 8


def test_a_missing_root_is_left_alone(tmp_path, catalog_db, media, random_model):
    """An unmounted drive must not empty the library of everything that was on it."""
    other = tmp_path / "drive"
    other.mkdir()
    (other / "x.txt").write_text("a green star on a disk", encoding="utf-8")
    lib = Library(tmp_path / "lib", db=catalog_db, model=random_model, create=True)
    lib.index([media, other])
    other.rename(tmp_path / "unplugged")
    skipped = []
    r = lib.index([], on_skip=lambda p, why: skipped.append((p, why)))
    assert skipped == [(str(other), "no such file or folder")]
    assert r.removed == 0 and str(other / "x.txt") in _items(lib)


def test_removing_more_files_than_a_statement_may_name(tmp_path, random_model):
    """SQLite allows 32,766 bound variables a statement; removing 40,000 files must not put them
    all in one `IN (...)`. Shown with the limit lowered to 600 and 700 files removed at once."""
    import sqlite3

    from sqlalchemy import event

    media = tmp_path / "media"
    media.mkdir()
    for i in range(700):
        (media / f"{i:03d}.txt").write_text(f"note number {i}", encoding="utf-8")
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    event.listen(lib.engine, "connect", lambda conn, _: conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 600))
    lib.engine.dispose()  # pooled connections reopen with the limit
    assert lib.index([media]).new == 700
    for p in media.iterdir():
        p.unlink()
    report = lib.index([media])
    assert report.removed == 700 and lib.stats()["files"] == 0 and lib.check().ok


def test_an_unmounted_drive_keeps_its_items(tmp_path, catalog_db, media, random_model, monkeypatch):
    """A root recorded as a mount point whose drive is unmounted is an empty folder, not a folder
    whose files were deleted: `xmr index` says so and keeps its items until it is back."""
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: os.fspath(p) == str(media) or real(p))
    lib = Library(tmp_path / "lib", db=catalog_db, model=random_model, create=True)
    lib.index([media])
    before = _items(lib)
    kept = tmp_path / "the-drive"
    shutil.move(str(media), kept)  # unmounted: the drive's files are elsewhere, an empty folder stays
    media.mkdir()
    monkeypatch.setattr(os.path, "ismount", real)
    skips: list[tuple[str, str]] = []
    report = lib.index(on_skip=lambda path, reason: skips.append((path, reason)))
    assert report.removed == 0 and _items(lib) == before
    assert skips == [(str(media), "nothing is mounted there now; its items are kept until it is back")]
    media.rmdir()
    shutil.move(str(kept), media)  # mounted again
    monkeypatch.setattr(os.path, "ismount", lambda p: os.fspath(p) == str(media) or real(p))
    again = lib.index()
    assert (again.removed, again.new, again.unchanged) == (0, 0, 8) and _items(lib) == before
