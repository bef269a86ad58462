"""`xmr stats` at 10M rows reads counts kept in meta (indexer.catalog_version): they must be
used only while no committed change to files or items has happened since they were made, and
then equal a full count."""

from __future__ import annotations

import json
import sqlite3

from sqlalchemy import delete, select

from indexer import catalog_version
from indexer.catalog import File, Item, get_meta, set_meta
from indexer.stats import CACHE_KEY, VERSION_KEY, counted, read_stats
from tests.conftest import index_pictures_and_note, run_xmr


def _stats(lib) -> dict:
    with lib.engine.connect() as conn:
        return read_stats(lambda sql: list(conn.exec_driver_sql(sql).fetchall()))


def _full(lib) -> dict:
    with lib.engine.connect() as conn:
        return counted(lambda sql: list(conn.exec_driver_sql(sql).fetchall()))


def _version(lib) -> str | None:
    with lib.store.Session() as s:
        return get_meta(s, VERSION_KEY)


def test_counts_kept_after_an_index_run_and_dropped_by_any_change(tmp_path, random_model, catalog_db):
    lib, media = index_pictures_and_note(tmp_path, random_model, 3, "a note about boats", db=catalog_db)
    st = _stats(lib)
    assert st["counts_kept"] and st["files"] == 4 and st["items_by_modality"]["image"] == 3
    assert {k: st[k] for k in _full(lib)} == _full(lib)
    kept_version = _version(lib)

    # a rolled-back change leaves the token and the kept counts as they were
    with lib.store.Session() as s:
        s.execute(delete(Item).where(Item.modality == "image"))
        s.rollback()
    assert _version(lib) == kept_version and _stats(lib)["counts_kept"]

    # an ORM statement that deletes rows: the counts are no longer trusted, and a count is right
    with lib.store.Session() as s:
        victim = s.scalars(select(File).where(File.path.like("%0.png"))).one()
        s.execute(delete(Item).where(Item.file_id == victim.id))
        s.execute(delete(File).where(File.id == victim.id))
        s.commit()
    assert _version(lib) != kept_version
    st = _stats(lib)
    assert not st["counts_kept"] and st["files"] == 3 and st["items_by_modality"]["image"] == 2

    # an index run (this one puts the deleted file back) keeps the new counts
    (media / "new.txt").write_text("another note", encoding="utf-8")
    lib.index([media])
    st = _stats(lib)
    assert st["counts_kept"] and st["files"] == 5 and {k: st[k] for k in _full(lib)} == _full(lib)

    # an object changed through the session (a flush) counts as a change too
    with lib.store.Session() as s:
        s.scalars(select(File).where(File.path.like("%new.txt"))).one().size += 1
        s.commit()
    assert not _stats(lib)["counts_kept"]
    with lib.store.Session() as s:
        assert catalog_version.refresh(s) and not catalog_version.refresh(s)  # counted once
    assert _stats(lib)["counts_kept"]

    # a slow count (here: said to have taken 5 s) is not made again a moment later, unless forced
    with lib.store.Session() as s:
        kept = get_meta(s, CACHE_KEY)
        set_meta(s, CACHE_KEY, {**kept, "seconds": 5.0})
        s.scalars(select(File).where(File.path.like("%new.txt"))).one().size += 1
        s.commit()
        assert not catalog_version.refresh(s) and not _stats(lib)["counts_kept"]
        assert catalog_version.refresh(s, force=True) and _stats(lib)["counts_kept"]


def test_deleted_files_and_the_fast_cli_path_agree_with_a_count(tmp_path, random_model):
    """What a user sees: `xmr stats` after files are deleted and the library indexed again, on
    the read-only fast path (sqlite3, no SQLAlchemy) that uses the kept counts."""
    lib, media = index_pictures_and_note(tmp_path, random_model, 4, "a note")
    (media / "1.png").unlink()
    (media / "2.png").unlink()
    lib.index([media])
    lib.close()
    out = json.loads(run_xmr("--library", str(tmp_path / "lib"), "stats", "--json", check=True).stdout)
    assert out["counts_kept"] and out["files"] == 3 and out["items_by_modality"]["image"] == 2
    conn = sqlite3.connect(tmp_path / "lib" / "catalog.db")
    kept = json.loads(conn.execute("SELECT value FROM meta WHERE key = ?", (CACHE_KEY,)).fetchone()[0])
    assert kept["counts"] == counted(lambda sql: conn.execute(sql).fetchall())
