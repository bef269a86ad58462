"""`xmr check` finds planted inconsistencies and `--repair` fixes them."""

from __future__ import annotations


import numpy as np
from sqlalchemy import select

from indexer.catalog import Item
from retrieval import Library
from tests.conftest import index_pictures_and_note, run_xmr


def test_check_detects_and_repairs(tmp_path, catalog_db, random_model):
    lib, media = index_pictures_and_note(tmp_path, random_model, pictures=5, note="a green star", db=catalog_db)
    libdir = ["--library", str(lib.path), *(["--db", catalog_db] if catalog_db else [])]
    assert run_xmr(*libdir, "check").returncode == 0

    # Plant: one row loses its vector, one vector has no row, one indexed file is deleted.
    vecs = lib.vectors()
    with lib.Session() as s:
        victim = s.scalars(select(Item.id).order_by(Item.id)).first()
    vecs.remove([victim])
    vecs.add(np.ones((1, vecs.d), np.float32) / np.sqrt(vecs.d), [10**6])
    vecs.save(lib.index_path)
    (media / "4.png").unlink()

    proc = run_xmr(*libdir, "check")
    assert proc.returncode == 1
    out = proc.stdout
    assert "1 vectors have no catalog row" in out
    assert "1 catalog items have no vector" in out
    assert "no longer exist" in out and "4.png" in out

    fixed = run_xmr(*libdir, "check", "--repair")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "repaired:" in fixed.stdout
    again = run_xmr(*libdir, "check")
    assert again.returncode == 0 and again.stdout.strip().endswith("ok"), again.stdout

    # The file whose vector was lost is indexed again by the next run.
    lib2 = Library(lib.path, db=catalog_db)
    report = lib2.index([])
    assert report.new == 1 and report.removed == 0
    assert lib2.check().ok
    assert lib2.vectors().ntotal == 5


def test_orphan_vectors_are_removed_when_a_writer_opens(tmp_path, catalog_db, random_model):
    """A crash after the index file was replaced but before the SQL commit leaves vectors without rows."""
    lib, media = index_pictures_and_note(tmp_path, random_model, pictures=5, note="a green star", db=catalog_db)
    vecs = lib.vectors()
    vecs.add(np.ones((2, vecs.d), np.float32) / np.sqrt(vecs.d), [10**6, 10**6 + 1])
    vecs.save(lib.index_path)
    fresh = Library(lib.path, db=catalog_db)
    assert not fresh.check().ok
    report = fresh.index([])
    assert report.unchanged == 6
    assert fresh.check().ok and 10**6 not in fresh.vectors().ids()
