"""An interrupted index run leaves a consistent library, and the next run finishes the job."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.catalog import File, Item
from retrieval import Library
from scripts.synthetic import CONCEPTS, draw
from tests.conftest import ROOT


@pytest.fixture
def many(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    rng = random.Random(0)
    for i in range(40):
        draw(CONCEPTS[i % len(CONCEPTS)], rng).save(folder / f"{i:03d}.png")
    return folder


def _snapshot(lib: Library) -> dict[str, np.ndarray]:
    with lib.Session() as s:
        rows = s.execute(select(File.path, Item.id).join(Item)).all()
    return {path: lib.vectors().reconstruct(i) for path, i in rows}


@pytest.mark.parametrize("where", ["encode", "apply", "checkpoint"])
def test_interrupt_then_resume(tmp_path, many, random_model, monkeypatch, where):
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    enc = lib.encoder
    calls = {"n": 0}
    real_encode = enc.encode_images
    real_add = lib.vectors(create=True).add

    def encode_images(batch):
        calls["n"] += 1
        if where == "encode" and calls["n"] == 3:
            raise KeyboardInterrupt
        return real_encode(batch)

    def add(xb, ids):
        if where == "apply" and calls["n"] == 3:
            real_add(xb, ids)
            raise KeyboardInterrupt  # after the vectors went in, before the rows were committed
        real_add(xb, ids)

    real_commit = Session.commit

    def commit(session):
        if where == "checkpoint" and calls["n"] == 3:
            raise KeyboardInterrupt  # the new index file is written, the rows are not committed
        real_commit(session)

    monkeypatch.setattr(Session, "commit", commit)
    monkeypatch.setattr(enc, "encode_images", encode_images)
    monkeypatch.setattr(lib.vectors(), "add", add)
    with pytest.raises(KeyboardInterrupt):
        lib.index([many], batch_size=4, checkpoint_seconds=0)

    # What an interrupted run left behind is consistent, and holds the checkpointed work.
    reopened = Library(tmp_path / "lib")
    assert reopened.check().ok, reopened.check().problems
    if where == "checkpoint":  # the uncommitted index file is there, unused, until the next writer
        assert reopened.store.stray_files() and reopened.index_path not in reopened.store.stray_files()
    done = reopened.stats()["items"]
    assert 0 < done < 40
    monkeypatch.undo()

    report = reopened.index([many], batch_size=4)
    assert report.unchanged == done and report.new == 40 - done
    assert reopened.check().ok and not reopened.store.stray_files()
    assert sorted(p.name for p in reopened.path.glob("vectors*")) == [reopened.index_path.name]

    single = Library(tmp_path / "single", model=random_model, create=True)
    single.index([many])
    a, b = _snapshot(reopened), _snapshot(single)
    assert a.keys() == b.keys()
    for path in a:
        assert np.allclose(a[path], b[path], atol=1e-5)


@pytest.mark.parametrize("decoder", ["threads", "processes"])
def test_ctrl_c_on_the_cli(tmp_path, many, random_model, decoder):
    """SIGINT to a real `xmr index` (its whole process group, as a terminal sends it, decode
    processes included): a clean message, exit 130, a library that checks out."""
    for i in range(40, 400):  # enough work that the signal lands mid-run
        (many / f"{i:03d}.png").write_bytes((many / f"{i % 40:03d}.png").read_bytes() + bytes([i % 251]) * (i + 1))
    lib = str(tmp_path / "lib")
    cmd = [sys.executable, "-m", "retrieval.cli", "--library", lib, "index", str(many), "--model", random_model,
           "--no-progress", "--batch-size", "4", "--checkpoint-every", "0", "--decoder", decoder]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    deadline = time.time() + 120
    while not list((tmp_path / "lib").glob("vectors-*.faiss")) and time.time() < deadline:
        time.sleep(0.05)  # the first checkpoint: the run is under way
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    check = subprocess.run([sys.executable, "-m", "retrieval.cli", "--library", lib, "check"], capture_output=True, text=True, cwd=ROOT)
    assert check.returncode == 0, check.stdout + check.stderr
    resumed = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert resumed.returncode == 0 and " 0 unchanged" not in resumed.stdout, resumed.stdout
    assert Library(lib).stats()["items"] == 400


def test_a_signal_during_a_checkpoint_waits_for_its_end():
    """Ctrl-C inside the commit of a checkpoint is held until the commit is done, then raised."""
    import os

    from indexer.signals import signals_deferred

    finished = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            finished.append(True)
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_before_a_command_runs_is_the_same_clean_stop(monkeypatch, capsys):
    """Ctrl-C while click still parses the command line: the same message and exit 130, not
    click's "Aborted!" with exit 1 (the crash test's SIGINTs found this)."""
    from retrieval import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.cli, "make_context", interrupted)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["stats"])
    assert exit_.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Aborted" not in err and "Traceback" not in err


def test_ctrl_c_that_a_library_turns_into_another_error_still_ends_as_interrupted(monkeypatch, capsys, tmp_path):
    """Ctrl-C while torch loads weights surfaced as "could not load the weights" (exit 1) in the
    crash test; a signal seen during the command makes it end as interrupted (exit 130)."""
    import os

    from retrieval import cli
    from retrieval.errors import ModelLoadError

    def load(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except BaseException as e:  # what torch's loader does with it, in effect
            raise ModelLoadError(f"could not load the weights ({e!r})") from None

    monkeypatch.setattr("indexer.models.load_encoder", load)
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    monkeypatch.setattr(cli, "_signalled", [])
    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.main(["--library", str(tmp_path / "lib"), "index", str(tmp_path / "a.txt"), "--model", "ViT-B-32", "--pretrained", "none"])
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert exit_.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "could not load" not in err and "Traceback" not in err
