"""Libraries written by older xmr versions open after an automatic migration; a library from a
newer version is refused with "upgrade xmr" instead of being guessed at."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from indexer.stats import SCHEMA_VERSION
from indexer.vectors import VectorIndex
from retrieval import Library
from retrieval.errors import SchemaVersionError
from tests.conftest import run_xmr

FIXTURE = Path(__file__).parent / "fixtures" / "library-v1"


@pytest.fixture
def v1_library(tmp_path) -> Path:
    lib = tmp_path / "lib"
    shutil.copytree(FIXTURE, lib, ignore=shutil.ignore_patterns("README.md"))
    return lib


def _schema(lib: Path) -> int:
    with sqlite3.connect(lib / "catalog.db") as conn:
        return int(json.loads(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]))


def _dump(lib: Path) -> list[str]:
    with sqlite3.connect(lib / "catalog.db") as conn:
        return list(conn.iterdump())


def test_a_first_schema_library_is_migrated_and_keeps_its_items(v1_library):
    assert _schema(v1_library) == 1
    before = VectorIndex.load(v1_library / "vectors.faiss", "IDMap2,Flat").all_vectors()

    lib = Library(v1_library)
    assert _schema(v1_library) == SCHEMA_VERSION  # migrated on open, one step at a time
    st = lib.stats()
    assert (st["files"], st["items"], st["vectors"]) == (5, 8, 8)
    assert st["items_by_modality"] == {"image": 3, "text": 5}
    with lib.Session() as s:  # schema 5: before videos, each item's embedder was its modality
        from sqlalchemy import select

        from indexer.catalog import Item

        assert set(s.execute(select(Item.modality, Item.embedder)).all()) == {("image", "image"), ("text", "text")}
    ids, xb = lib.vectors().all_vectors()
    assert np.array_equal(ids, before[0]) and np.array_equal(xb, before[1])  # nothing re-encoded, nothing lost

    report = lib.check()
    assert report.ok, report.problems  # the media folder of the machine that made it is not here:
    assert any("no longer exist" in w for w in report.warnings)  # a warning, not damage

    # Its stored vectors answer: the copy of a picture is its nearest neighbour.
    red = next(h for h in lib.search(vector=lib.item_vector(1), k=8) if h.path.endswith("red-circle.png"))
    hits = lib.similar(red.item_id, k=3, modality="image")
    assert hits[0].path.endswith("red-circle-copy.png") and hits[0].score > 0.999

    cli = run_xmr("--library", str(v1_library), "stats")
    assert cli.returncode == 0 and "items      8" in cli.stdout, cli.stdout + cli.stderr
    assert run_xmr("--library", str(v1_library), "check").returncode == 0


def test_a_migrated_library_takes_writes(v1_library):
    """A writer on the migrated library commits a newly named index file and drops the legacy one."""
    proc = run_xmr("--library", str(v1_library), "check", "--repair")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "removed 5 missing" in proc.stdout
    lib = Library(v1_library)
    assert lib.index_path.name != "vectors.faiss" and not (v1_library / "vectors.faiss").exists()
    assert lib.stats()["items"] == 0 and lib.vectors().ntotal == 0 and lib.check().ok


@pytest.mark.parametrize("command", [["stats"], ["check"], ["search", "a red circle"], ["index"]])
def test_a_library_from_a_newer_xmr_is_refused(v1_library, command):
    with sqlite3.connect(v1_library / "catalog.db") as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (json.dumps(SCHEMA_VERSION + 1),))
    before = _dump(v1_library)
    with pytest.raises(SchemaVersionError, match="upgrade xmr"):
        Library(v1_library)
    proc = run_xmr("--library", str(v1_library), *command)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "upgrade xmr" in proc.stderr and "Traceback" not in proc.stderr
    assert _dump(v1_library) == before  # refused, not touched


def test_a_postgres_catalog_of_schema_3_gets_64_bit_columns(tmp_path, postgres, random_model):
    """Schema 3 made `size` and `mtime_ns` 32-bit on Postgres, where a file's mtime in
    nanoseconds does not fit: migration 3 -> 4 widens them, and indexing works."""
    from sqlalchemy import create_engine, inspect, text

    from indexer.catalog import _WIDE_COLUMNS, Base, normalise_url

    url = postgres.new_database()
    engine = create_engine(normalise_url(url))
    Base.metadata.create_all(engine)
    with engine.begin() as conn:  # what schema 3 created there
        for table, column in _WIDE_COLUMNS:
            conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE INTEGER"))
        conn.execute(text("INSERT INTO meta (key, value) VALUES ('schema_version', '3')"))
    with pytest.raises(Exception, match="out of range"), engine.begin() as conn:
        conn.execute(text("INSERT INTO files (path, modality, size, mtime_ns, phash, indexed_at) "
                          "VALUES ('/x', 'image', 1, 1732960000000000000, '0', 0)"))
    media = tmp_path / "media"
    media.mkdir()
    (media / "note.txt").write_text("a red circle", encoding="utf-8")
    lib = Library(tmp_path / "lib", db=url, model=random_model, create=True)
    columns = {(t, c["name"]): str(c["type"]) for t in ("files", "items") for c in inspect(engine).get_columns(t)}
    assert columns[("files", "mtime_ns")] == columns[("files", "size")] == columns[("items", "id")] == "BIGINT"
    assert lib.index([media]).new == 1
    assert lib.check().ok and lib.stats()["files"] == 1
    engine.dispose()
