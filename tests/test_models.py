"""More than one model in a library (indexer.extra_models): model B's vectors added beside A's
equal a library built with B alone (SQLite and PostgreSQL catalogs); they follow later index
runs; searches never mix the two; an interrupted run resumes; dropping either model; the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from retrieval import Library
from retrieval.errors import EncoderMismatchError, UsageError
from retrieval.query import Query
from tests.conftest import run_xmr


@pytest.fixture()
def folder(tmp_path, samples):
    """A copy of the sample folder (pictures, caption notes), which the tests change."""
    return Path(shutil.copytree(samples[0], tmp_path / "media"))


def _ranking(lib: Library, q: str, modality: str | None = None) -> list[tuple[str, float]]:
    return [(Path(h.path).name, h.score) for h in lib.search(q, k=8, type=modality, mode="semantic")]


def _in_order(ranking: list[tuple[str, float]]) -> list[str]:
    """The names, those whose scores tie (within 1e-5: a file and its copy) by name: which of two
    equal vectors FAISS returns first turns on rounding that differs between builds and CPUs."""
    out: list[str] = []
    run: list[tuple[str, float]] = []
    for n, s in ranking:
        if run and abs(run[-1][1] - s) > 1e-5:
            out += sorted(x for x, _ in run)
            run = []
        run.append((n, s))
    return out + sorted(x for x, _ in run)


def _same(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> None:
    assert _in_order(a) == _in_order(b)
    assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-5)


def test_an_added_model_equals_a_library_built_with_it_and_follows_index_runs(tmp_path, folder, random_model, trained_model,
                                                                              monkeypatch, catalog_db):
    lib = Library(tmp_path / "lib", model=random_model, create=True, db=catalog_db)
    lib.index([folder])
    before = _ranking(lib, "a photo of a red circle")
    reports = lib.add_model(trained_model)
    (report,) = reports.values()
    n_items = lib.stats()["items"]
    assert report.added == n_items and report.skipped == 0
    fresh = Library(tmp_path / "fresh", model=trained_model, create=True)
    fresh.index([folder])
    as_b = Library(tmp_path / "lib", model=trained_model, db=catalog_db)
    assert as_b.slot is not None and lib.slot is None
    for q, kind in [("a photo of a red circle", "image"), ("a blue star", None), ("a green square", "text")]:
        _same(_ranking(as_b, q, kind), _ranking(fresh, q, kind))
    _same(_ranking(Library(tmp_path / "lib", db=catalog_db), "a photo of a red circle"), before)  # A's own vectors untouched
    assert [m.role for m in lib.models_info()] == ["main", "added"]
    assert lib.models_info()[1].vectors == n_items and lib.models_info()[1].behind == 0
    assert lib.check().ok
    from indexer import extra_models

    with monkeypatch.context() as m:  # a run with nothing new does not even load B
        m.setattr(extra_models, "load_encoder", lambda *a, **kw: pytest.fail("B was loaded for nothing"))
        Library(tmp_path / "lib", db=catalog_db).index([folder])

    # A later run of the main model: a new picture, one removed, one changed; B follows.
    photos = sorted((folder / "photos").iterdir())
    shutil.copy(photos[0], folder / "photos" / "zz-new.png")
    photos[1].unlink()
    shutil.copy(photos[2], photos[3])
    lib.index([folder])
    fresh.index([folder])
    as_b = Library(tmp_path / "lib", model=trained_model, db=catalog_db)
    info = lib.models_info()
    assert info[1].vectors == info[0].vectors == lib.stats()["items"] and info[1].behind == 0
    for q in ("a photo of a red circle", "a yellow triangle"):
        _same(_ranking(as_b, q, "image"), _ranking(fresh, q, "image"))
    assert as_b.vectors().ntotal == fresh.vectors().ntotal
    assert lib.check().ok and not lib.check().warnings


def test_searches_never_mix_models_and_sounds_stay_with_the_main_one(tmp_path, folder, random_model, trained_model, tiny_clap):
    from scripts.synthetic_audio import synth, write_sound

    write_sound(folder / "rain.wav", synth("noise", 3.0))
    lib = Library(tmp_path / "lib", model=random_model, audio_model=tiny_clap, create=True)
    lib.index([folder])
    lib.add_model(trained_model)
    as_b = Library(tmp_path / "lib", model=trained_model)
    hits = as_b.search("rain", k=200, mode="semantic")
    assert hits and all(h.modality != "audio" for h in hits)
    assert as_b.vectors().d == 64 and set(as_b.vectors().ids().tolist()) < set(lib.vectors().ids().tolist())
    with pytest.raises(UsageError, match="sounds"):
        as_b.search(Query(audios=[str(folder / "rain.wav")]))
    with pytest.raises(UsageError, match="main model"):
        as_b.tag(["cat"])
    with pytest.raises(UsageError, match="sounds"):  # the main model holds the only vectors of the sound
        lib.drop_model(random_model)
    assert lib.drop_model(trained_model) == trained_model
    assert [m.role for m in lib.models_info()] == ["main"]
    with pytest.raises(EncoderMismatchError, match="--add-model"):
        Library(tmp_path / "lib", model=trained_model)
    assert not list((tmp_path / "lib").glob("vectors-m*.faiss"))


def test_an_interrupted_sync_resumes_and_strays_are_removed(tmp_path, folder, random_model, trained_model, monkeypatch):
    from indexer import extra_models

    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([folder])
    calls = []
    real = extra_models._checkpoint

    def checkpoint_then_stop(s, index):
        real(s, index)
        calls.append(1)
        if len(calls) == 2:  # after a checkpoint with part of the work: like Ctrl-C there
            raise KeyboardInterrupt

    monkeypatch.setattr(extra_models, "_checkpoint", checkpoint_then_stop)
    monkeypatch.setattr(extra_models, "FILES_PER_ROUND", 4)
    with pytest.raises(KeyboardInterrupt):
        lib.add_model(trained_model, checkpoint_seconds=0)
    monkeypatch.undo()
    info = lib.models_info()[1]
    assert 0 < info.vectors < lib.stats()["items"] and info.behind > 0
    report = lib.check()
    assert report.ok and any("no vector of this model yet" in w for w in report.warnings)
    (tmp_path / "lib" / "vectors-m0123abcd-7.faiss").write_bytes(b"left by a killed run")
    lib.index([folder])  # the next run resumes (and removes what no commit names)
    assert not (tmp_path / "lib" / "vectors-m0123abcd-7.faiss").exists()
    assert lib.models_info()[1].behind == 0 and lib.check().ok
    fresh = Library(tmp_path / "fresh", model=trained_model, create=True)
    fresh.index([folder])
    _same(_ranking(Library(tmp_path / "lib", model=trained_model), "a purple square"), _ranking(fresh, "a purple square"))


def test_the_cli_adds_lists_searches_and_drops(tmp_path, folder, samples, random_model, trained_model):
    from click.testing import CliRunner

    from retrieval import cli

    lib = str(tmp_path / "lib")

    def xmr(*args: str):  # in-process: these are many commands, each would import torch anew
        return CliRunner().invoke(cli.cli, ["--library", lib, *args])

    assert run_xmr("--library", lib, "index", str(folder), "--model", random_model).returncode == 0
    r = run_xmr("--library", lib, "index", "--model", trained_model)  # a real process: no terminal to ask on
    assert r.returncode == 1 and "--add-model" in r.stderr and "Traceback" not in r.stderr
    r = xmr("index", "--model", trained_model, "--add-model", "--no-progress")
    assert r.exit_code == 0 and "added" in r.stdout, r.output
    rows = json.loads(xmr("models", "--json").stdout)
    assert [x["role"] for x in rows] == ["main", "added"] and rows[1]["vectors"] == rows[0]["vectors"] > 0
    r = xmr("search", "a photo of a blue star", "--model", trained_model, "--type", "image", "-k", "1", "--json", "--no-server")
    assert r.exit_code == 0, r.output
    assert samples[1][str(Path(json.loads(r.stdout)[0]["path"]).relative_to(folder))] == "blue star"
    r = xmr("models", "drop", "ViT-H-14")
    assert r.exit_code == 2 and "no vectors of ViT-H-14" in r.output
    r = xmr("models", "drop", random_model)  # the main one: B becomes main
    assert r.exit_code == 0, r.output
    rows = json.loads(xmr("models", "--json").stdout)
    assert [(x["role"], x["model"]) for x in rows] == [("main", trained_model)]
    r = xmr("search", "a red circle", "--no-server")  # the library's own model now
    assert r.exit_code == 0 and xmr("check").exit_code == 0
    r = xmr("models", "drop", trained_model)
    assert r.exit_code == 2 and "only model" in r.output


def test_index_asks_before_adding_a_model_on_a_terminal(tmp_path, folder, random_model, trained_model, monkeypatch):
    from click.testing import CliRunner

    from retrieval import cli, cli_models

    lib = tmp_path / "lib"
    Library(lib, model=random_model, create=True).index([folder / "photos"])
    monkeypatch.setattr(cli_models, "_can_ask", lambda: True)
    runner = CliRunner()
    no = runner.invoke(cli.cli, ["--library", str(lib), "index", "--model", trained_model, "--no-progress"], input="n\n")
    assert no.exit_code == 1 and "Add " in no.output and "beside" in no.output
    assert [m.role for m in Library(lib).models_info()] == ["main"]
    yes = runner.invoke(cli.cli, ["--library", str(lib), "index", "--model", trained_model, "--no-progress"], input="y\n")
    assert yes.exit_code == 0, yes.output
    assert [m.role for m in Library(lib).models_info()] == ["main", "added"]
