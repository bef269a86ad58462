"""Faults during a streaming index build (issue 30): a build killed at any point leaves the
previous index in service and the next run builds again; a disk that fills during a build is a
clear error and the library stays as it was."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_xmr

REPO = Path(__file__).resolve().parent.parent

# `xmr` in a child that SIGKILLs itself at a chosen point of the streaming build: after the
# k-means training ("train") or after the first chunk of vectors is in the new index ("fill").
KILLER = """
import os, signal, sys
from indexer import ivf_build
where = os.environ["XMR_TEST_KILL_IN"]
fill = ivf_build.fill_reserved
def killing_fill(faiss, index, chunks, progress=None):
    if where == "train":
        os.kill(os.getpid(), signal.SIGKILL)
    fill(faiss, index, chunks, lambda n: os.kill(os.getpid(), signal.SIGKILL))
ivf_build.fill_reserved = killing_fill
from retrieval.cli import main
sys.argv = ["xmr", *sys.argv[1:]]
main()
"""


def _budget(st: dict) -> str:
    """--max-memory: too few bytes for exact search, so the library moves to an IVF index."""
    return str(st["vectors"] * 3 * st["encoder"]["dim"])


def _stats(lib: Path) -> dict:
    return json.loads(run_xmr("--library", str(lib), "stats", "--json", check=True).stdout)


def _search(lib: Path) -> list[str]:
    out = run_xmr("--library", str(lib), "search", "a red circle", "-k", "5", "--json", check=True).stdout
    return [h["path"] for h in json.loads(out)]


@pytest.fixture
def flat_library(tmp_path, random_model, samples) -> Path:
    media = tmp_path / "media"
    shutil.copytree(samples[0], media)
    lib = tmp_path / "lib"
    run_xmr("--library", str(lib), "index", str(media), "--model", random_model, check=True)
    assert _stats(lib)["index_type"].endswith("Flat")
    return lib


@pytest.mark.parametrize("where", ["train", "fill"])
def test_a_build_killed_leaves_the_previous_index_and_the_next_run_builds(flat_library, where):
    lib = flat_library
    before, hits = _stats(lib), _search(lib)
    env = {**os.environ, "XMR_TEST_KILL_IN": where, "PYTHONPATH": str(REPO)}
    budget = _budget(before)
    proc = subprocess.run([sys.executable, "-c", KILLER, "--library", str(lib), "index", "--max-memory", budget],
                          env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == -9, proc.stderr  # killed where asked, mid-build
    after = _stats(lib)
    assert after["index_type"].endswith("Flat") and after["index_file"] == before["index_file"]
    assert after["items"] == before["items"] and after["vectors"] == before["vectors"]
    assert run_xmr("--library", str(lib), "check", check=True).stdout.strip().endswith("ok")
    assert _search(lib) == hits  # the previous index serves as before
    run_xmr("--library", str(lib), "index", "--max-memory", budget, check=True)  # the same command, again
    rebuilt = _stats(lib)
    assert rebuilt["index_type"].startswith("IVF") and rebuilt["vectors"] == before["vectors"]
    assert run_xmr("--library", str(lib), "check", check=True).stdout.strip().endswith("ok")
    assert sorted(p.name for p in lib.glob("*.faiss")) == [rebuilt["index_file"]]  # the killed run's files gone


# `xmr` in a child whose disk "fills" at a chosen write: from then on no file may grow past 4 KB
# (RLIMIT_FSIZE, with SIGXFSZ ignored: writes fail with EFBIG, as they would with ENOSPC).
FILLER = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from indexer.vectors import VectorIndex
from indexer.full_vectors import FullVectors
def full_disk():
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
def filling(cls, name):
    method = getattr(cls, name)
    def wrapped(*args, **kwargs):
        full_disk()
        return method(*args, **kwargs)
    setattr(cls, name, wrapped)
filling(*{"index": (VectorIndex, "save"), "vectors": (FullVectors, "append")}[os.environ["XMR_TEST_FULL_AT"]])
from retrieval.cli import main
sys.argv = ["xmr", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("at", ["index", "vectors"])
def test_a_disk_that_fills_is_a_clear_error_and_loses_nothing(flat_library, samples, tmp_path, at):
    """`index`: the rebuilt index cannot be saved; `vectors`: a new file's vectors cannot be kept."""
    lib = flat_library
    before, hits = _stats(lib), _search(lib)
    files_before = sorted(p.name for p in lib.iterdir())
    media = Path(before["roots"][0])
    if at == "vectors":
        shutil.copy(next(samples[0].rglob("*.png")), media / "new-picture.png")
    env = {**os.environ, "XMR_TEST_FULL_AT": at, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", FILLER, "--library", str(lib), "index", "--max-memory", _budget(before)],
                          env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "cannot write" in proc.stderr and "make room" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    after = _stats(lib)
    assert {k: after[k] for k in ("index_file", "index_type", "items", "vectors", "files")} == \
        {k: before[k] for k in ("index_file", "index_type", "items", "vectors", "files")}
    assert run_xmr("--library", str(lib), "check", check=True).stdout.strip().endswith("ok")
    assert _search(lib) == hits
    run_xmr("--library", str(lib), "index", "--max-memory", _budget(before), check=True)  # room again
    again = _stats(lib)
    assert again["index_type"].startswith("IVF") and again["files"] == before["files"] + (at == "vectors")
    assert run_xmr("--library", str(lib), "check", check=True).stdout.strip().endswith("ok")
    assert not [p for p in lib.iterdir() if p.name.endswith(".tmp")], files_before
