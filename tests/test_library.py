"""Library contracts: encoder identity, schema versions, one writer, any SQLAlchemy URL, model specs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from sqlalchemy import update

from indexer.catalog import SCHEMA_VERSION, Meta
from retrieval import Library
from retrieval.errors import (
    EncoderMismatchError,
    LibraryError,
    LibraryLockedError,
    ModelLoadError,
    SchemaVersionError,
    UsageError,
)
from tests.conftest import ROOT


@pytest.fixture
def notes(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("a red circle", encoding="utf-8")
    (folder / "b.md").write_text("a blue square", encoding="utf-8")
    return folder


def test_library_records_its_encoder(tmp_path, catalog_db, notes, random_model, trained_model):
    lib = Library(tmp_path / "lib", db=catalog_db, model=random_model, create=True)
    lib.index([notes])
    again = Library(tmp_path / "lib", db=catalog_db)  # no --model: the recorded one is used
    assert again.spec.model == random_model
    assert again.search("red", k=1)[0].path.endswith("a.txt") or again.search("red", k=1)
    with pytest.raises(EncoderMismatchError, match="was built with"):
        Library(tmp_path / "lib", db=catalog_db, model=trained_model)
    with pytest.raises(EncoderMismatchError, match="FAISS index"):
        Library(tmp_path / "lib", db=catalog_db, factory="SQ8")


def test_changed_weights_are_refused(tmp_path, notes, random_model):
    from tests.conftest import save_random_model

    folder = save_random_model(tmp_path / "model", seed=1)
    lib = Library(tmp_path / "lib", model=f"local-dir:{folder}", create=True)
    lib.index([notes])
    save_random_model(folder, seed=2)  # same path, other weights
    with pytest.raises(EncoderMismatchError, match="changed"):
        Library(tmp_path / "lib").search("red")


def test_newer_schema_is_refused(tmp_path, catalog_db, notes, random_model):
    lib = Library(tmp_path / "lib", db=catalog_db, model=random_model, create=True)
    lib.index([notes])
    with lib.engine.begin() as conn:
        conn.execute(update(Meta).where(Meta.key == "schema_version").values(value=json.dumps(SCHEMA_VERSION + 1)))
    with pytest.raises(SchemaVersionError, match="upgrade xmr"):
        Library(tmp_path / "lib", db=catalog_db)


def test_older_schema_is_migrated(tmp_path, catalog_db, notes, random_model, monkeypatch):
    from indexer import catalog

    lib = Library(tmp_path / "lib", db=catalog_db, model=random_model, create=True)
    lib.index([notes])
    with lib.engine.begin() as conn:
        conn.execute(update(Meta).where(Meta.key == "schema_version").values(value=json.dumps(0)))
    ran = []
    monkeypatch.setitem(catalog.MIGRATIONS, 0, lambda conn: ran.append(0))
    reopened = Library(tmp_path / "lib", db=catalog_db)
    assert ran == [0]
    with reopened.Session() as s:
        assert catalog.get_meta(s, "schema_version") == SCHEMA_VERSION


def test_one_writer_at_a_time(tmp_path, catalog_db, notes, random_model):
    lib = Library(tmp_path / "lib", db=catalog_db, model=random_model, create=True)
    with lib.write_lock():
        with pytest.raises(LibraryLockedError, match="another xmr process"):
            Library(tmp_path / "lib", db=catalog_db).index([notes])
    assert lib.index([notes]).new == 2


def test_a_second_writer_queues_with_wait(tmp_path, catalog_db, notes, random_model):
    lib = Library(tmp_path / "lib", db=catalog_db, model=random_model, create=True)
    cmd = [sys.executable, "-m", "retrieval.cli", "--library", str(lib.path), *(["--db", catalog_db] if catalog_db else []), "index", str(notes), "--no-progress",
           "--model", random_model]
    with lib.write_lock():
        refused = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert refused.returncode == 1, refused.stderr
        assert f"another xmr process (pid {os.getpid()}" in refused.stderr and "is writing" in refused.stderr
        assert "add --wait" in refused.stderr and "Traceback" not in refused.stderr
        queued = subprocess.Popen(cmd + ["--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            said = ""
            while "waiting for" not in said:
                line = queued.stderr.readline()
                assert line, f"ended without waiting: {said}"
                said += line
            assert f"waiting for another xmr process (pid {os.getpid()}" in said and "to finish writing" in said
            time.sleep(1)
            assert queued.poll() is None  # still queued behind the lock we hold
        except BaseException:
            queued.kill()
            raise
    out, err = queued.communicate(timeout=300)
    assert queued.returncode == 0, err
    assert "2 new" in out, out
    assert Library(lib.path, db=catalog_db).stats()["items"] == 2


def test_catalog_at_any_sqlalchemy_url(tmp_path, notes, random_model):
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    lib = Library(tmp_path / "lib", model=random_model, db=url, create=True)
    lib.index([notes])
    assert (tmp_path / "elsewhere.sqlite").exists() and not (tmp_path / "lib" / "catalog.db").exists()
    assert len(Library(tmp_path / "lib", db=url).search("circle", k=5)) == 2
    with pytest.raises(LibraryError):
        Library(tmp_path / "lib2", db="nosuchdialect://x", create=True)


@pytest.mark.parametrize("kind", ["sqlite-elsewhere", "postgres"])
def test_a_catalog_belongs_to_one_library(tmp_path, notes, random_model, kind, request):
    """Two library folders pointed at one catalog: the second is refused before it changes
    anything, and a repair in the first loses nothing."""
    from tests.conftest import run_xmr

    url = f"sqlite:///{tmp_path / 'shared.sqlite'}" if kind == "sqlite-elsewhere" else request.getfixturevalue("postgres").new_database()
    first = Library(tmp_path / "one", model=random_model, db=url, create=True)
    first.index([notes])
    before = first.stats()
    other = run_xmr("--library", str(tmp_path / "two"), "--db", url, "index", str(notes), "--model", random_model)
    assert other.returncode == 1 and "Traceback" not in other.stderr, other.stderr
    assert f"belongs to the library at {(tmp_path / 'one').resolve()}" in other.stderr
    assert not (tmp_path / "two").exists()  # nothing made, nothing changed
    (tmp_path / "two").mkdir()  # a folder that exists, as when both were libraries before
    for command in (["check", "--repair"], ["stats"], ["search", "a red circle"]):
        refused = run_xmr("--library", str(tmp_path / "two"), "--db", url, *command)
        assert refused.returncode == 1 and "belongs to the library" in refused.stderr, (command, refused.stderr)
    assert run_xmr("--library", str(tmp_path / "one"), "--db", url, "check", "--repair").returncode == 0
    after = Library(tmp_path / "one", db=url).stats()
    assert (after["files"], after["items"], after["vectors"]) == (before["files"], before["items"], before["vectors"]) == (2, 2, 2)
    # The folder's files belong to that catalog too: the folder with another catalog is refused.
    with pytest.raises(LibraryError, match="holds the files of another catalog"):
        Library(tmp_path / "one", db=f"sqlite:///{tmp_path / 'another.sqlite'}", create=True)


def test_a_failed_first_command_leaves_no_library(tmp_path, notes, catalog_db):
    """A usage error or weights that cannot be loaded: no catalog, no lock, no folder."""
    from tests.conftest import run_xmr

    db = ["--db", catalog_db] if catalog_db else []
    for args in (["--recall", "7"], ["--model", "ViT-B-32", "--pretrained", str(tmp_path / "no-such-weights.bin")],
                 ["--model", "local-dir:" + str(tmp_path / "empty")]):
        (tmp_path / "empty").mkdir(exist_ok=True)
        proc = run_xmr("--library", str(tmp_path / "lib"), *db, "index", str(notes), *args)
        assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr
        assert not (tmp_path / "lib").exists(), args
        if catalog_db:
            from sqlalchemy import create_engine, inspect

            from indexer.catalog import normalise_url

            engine = create_engine(normalise_url(catalog_db))
            assert inspect(engine).get_table_names() == [], args
            engine.dispose()
    stats = run_xmr("--library", str(tmp_path / "lib"), *db, "stats")
    assert stats.returncode == 1 and "no library" in stats.stderr + stats.stdout


def test_missing_library_is_an_error(tmp_path):
    with pytest.raises(LibraryError, match="no library"):
        Library(tmp_path / "nothing")


def test_model_specs(tmp_path, notes, random_model):
    """Registry name + checkpoint file, unknown names and tags, and a local-dir without weights."""
    import open_clip

    from scripts.train_demo_model import MODEL_CFG

    cfg_dir = tmp_path / "cfgs"
    cfg_dir.mkdir()
    (cfg_dir / "xmr-tiny-test.json").write_text(json.dumps(MODEL_CFG))
    open_clip.add_model_config(cfg_dir)  # open_clip's own way to register an architecture
    checkpoint = random_model.split(":", 1)[1] + "/open_clip_model.safetensors"
    lib = Library(tmp_path / "lib", model="xmr-tiny-test", pretrained=checkpoint, create=True)
    lib.index([notes])
    ident = lib.stats()["encoder"]
    assert ident["pretrained"] == checkpoint and len(ident["weights_sha256"]) == 64

    with pytest.raises(UsageError, match="unknown model 'NoSuch-1'; available: .*ViT-B-32"):
        Library(tmp_path / "l2", model="NoSuch-1", pretrained="x", create=True).encoder
    with pytest.raises(UsageError, match="unknown pretrained tag 'nope' for ViT-B-32; available: .*laion2b_s34b_b79k"):
        Library(tmp_path / "l3", model="ViT-B-32", pretrained="nope", create=True).encoder
    with pytest.raises(ModelLoadError, match="checkpoint file not found"):
        Library(tmp_path / "l4", model="ViT-B-32", pretrained="/no/such/weights.bin", create=True).encoder
    empty = tmp_path / "empty-model"
    shutil.copytree(random_model.split(":", 1)[1], empty)
    (empty / "open_clip_model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no weights file"):
        Library(tmp_path / "l5", model=f"local-dir:{empty}", create=True).encoder
