"""Watched folders (`xmr index --watch`): real file-system events in a temporary folder are
indexed as they settle; moves keep their vectors; temp files, vanished and broken files are
handled; a root that disappears pauses; polling where events cannot be had; one watcher."""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from sqlalchemy import select

from indexer.catalog import File
from indexer.stages.options import IndexOptions
from indexer.stages.report import Reporter
from indexer.watch import OnceReporter, WatchOptions, watch_status
from retrieval import Library
from retrieval.errors import AlreadyWatchingError
from retrieval.watching import watcher
from scripts.synthetic import CONCEPTS, draw
from tests.test_incremental import _items

FAST = WatchOptions(quiet_s=0.4, max_wait_s=2.0, roots_every_s=0.2)


def until(cond: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


class Told(Reporter):
    def __init__(self) -> None:
        self.skips: list[tuple[str, str]] = []

    def skip(self, path: str, reason: str) -> None:
        self.skips.append((path, reason))


def _picture(path: Path, i: int) -> None:
    draw(CONCEPTS[i % len(CONCEPTS)], random.Random(i)).save(path)


class Running:
    """A watcher of `roots` on its own thread, as `xmr index --watch` runs one."""

    def __init__(self, lib: Library, roots: list[Path], options: WatchOptions = FAST) -> None:
        self.told, self.notes, self.stop = Told(), [], threading.Event()
        self.w = watcher(lib, [str(r) for r in roots], IndexOptions(), self.told, self.notes.append, options)
        self.error: BaseException | None = None

    def __enter__(self) -> Running:
        self.w.__enter__()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self) -> None:
        try:
            self.w.loop(self.stop)
        except BaseException as e:  # noqa: BLE001 - the test thread reports it
            self.error = e

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        self.w.__exit__(None, None, None)
        assert self.error is None, self.error


@pytest.fixture
def media(tmp_path) -> Path:
    folder = tmp_path / "media"
    (folder / "trip").mkdir(parents=True)
    for i in range(3):
        _picture(folder / "trip" / f"p{i}.png", i)
    return folder


def test_changes_are_indexed_as_they_settle(tmp_path, catalog_db, media, random_model):
    lib = Library(tmp_path / "lib", db=catalog_db, model=random_model, create=True)
    lib.index([media])
    with Running(lib, [media]) as r:
        until(lambda: watch_status(lib.path)["state"] == "watching", what="the watcher's start")
        # A picture written in parts, each within the quiet time: read once, whole.
        data = (tmp_path / "whole.png")
        _picture(data, 5)
        blob = data.read_bytes()
        with open(media / "new.png", "wb") as f:
            for k in range(4):
                f.write(blob[k * len(blob) // 4:(k + 1) * len(blob) // 4])
                f.flush()
                time.sleep(0.15)
        until(lambda: str(media / "new.png") in _items(lib) and r.w.runs, what="the new picture")
        time.sleep(0.5)
        assert r.w.runs == 1 and not r.told.skips
        with lib.Session() as s:
            assert s.scalar(select(File.size).where(File.path == str(media / "new.png"))) == len(blob)

        # A renamed folder is a move: the same items, nothing encoded again.
        before = _items(lib)
        os.rename(media / "trip", media / "holiday")
        until(lambda: str(media / "holiday" / "p0.png") in _items(lib), what="the moved folder")
        after = _items(lib)
        assert sorted(after[str(media / "holiday" / f"p{i}.png")][0] for i in range(3)) == \
            sorted(before[str(media / "trip" / f"p{i}.png")][0] for i in range(3))
        assert not any("/trip/" in p for p in after)

        # Temp files and partial downloads are never indexed; a deletion removes the item.
        for name in ("photo.jpg.part", "clip.mp4.crdownload", "~$report.docx", ".hidden.png", "notes.txt.swp"):
            shutil.copy(data, media / name)
        os.remove(media / "holiday" / "p1.png")
        until(lambda: str(media / "holiday" / "p1.png") not in _items(lib), what="the deletion")
        time.sleep(1.0)
        assert set(_items(lib)) == {str(media / "new.png")} | {str(media / "holiday" / f"p{i}.png") for i in (0, 2)}
    assert watch_status(lib.path) is None  # the watcher is gone, and says so


def test_broken_and_vanishing_files(tmp_path, media, random_model):
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([media])
    with Running(lib, [media]) as r:
        (media / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
        until(lambda: r.told.skips, what="the broken file's skip")
        # Events that bring it back unchanged (here: lost events, every folder looked at again)
        # do not tell it again; a file gone before it could be read is passed over quietly.
        runs = r.w.runs
        r.w.changes.everything()
        until(lambda: r.w.runs > runs, what="the rescan")
        (media / "brief.png").write_bytes(b"x")
        os.remove(media / "brief.png")
        time.sleep(1.5)
        assert [p for p, _ in r.told.skips] == [str(media / "broken.png")]
    quiet = Told()
    OnceReporter(quiet).skip(str(media / "never-there.png"), "file vanished")
    assert quiet.skips == []


def test_a_root_that_disappears_is_paused_and_resumed(tmp_path, media, random_model):
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([media])
    before = _items(lib)
    away = tmp_path / "unmounted"
    with Running(lib, [media]) as r:
        os.rename(media, away)  # the drive is unmounted: its files did not go anywhere
        until(lambda: r.error or watch_status(lib.path)["paused"] == [str(media)], what="the pause")
        assert r.error is None, repr(r.error)
        _picture(away / "while-away.png", 7)
        time.sleep(1.0)
        assert _items(lib) == before  # nothing removed meanwhile
        os.rename(away, media)
        until(lambda: str(media / "while-away.png") in _items(lib), what="the root's return")
        assert watch_status(lib.path)["paused"] == []
        assert any("is gone" in n for n in r.notes) and any("is back" in n for n in r.notes)
        assert {p: v for p, v in _items(lib).items() if p in before} == before


def test_a_burst_is_batched(tmp_path, random_model):
    media = tmp_path / "media"
    media.mkdir()
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([media])
    source = tmp_path / "source"
    source.mkdir()
    for i in range(300):
        _picture(source / f"b{i:03d}.png", i)
    with Running(lib, [media], WatchOptions(quiet_s=0.5, max_wait_s=3.0)) as r:
        shutil.copytree(source, media / "burst")
        until(lambda: len(_items(lib)) == 300, timeout=120, what="all 300 files")
        assert r.w.runs <= 3, r.w.runs


def test_polling_when_events_cannot_be_had(tmp_path, media, random_model, monkeypatch):
    import watchdog.observers

    class NoWatches(watchdog.observers.Observer):  # the inotify watch limit, reached
        def start(self) -> None:
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watchdog.observers, "Observer", NoWatches)
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([media])
    with Running(lib, [media], WatchOptions(quiet_s=0.4, poll_s=None)) as r:
        assert r.w.polling and len([n for n in r.notes if "looking for changes every" in n]) == 1
        _picture(media / "polled.png", 4)
        until(lambda: str(media / "polled.png") in _items(lib), what="the polled picture")
        assert watch_status(lib.path)["polling"] is True


def test_one_watcher_per_library(tmp_path, media, random_model):
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([media])
    with Running(lib, [media]):
        second = watcher(lib, [str(media)], IndexOptions(), Told(), print, FAST)
        with pytest.raises(AlreadyWatchingError, match="already watching"):
            second.__enter__()


def test_the_cli_and_the_server_watch(tmp_path, random_model):
    """`xmr index --watch` as a user runs it (a second one refused, SIGTERM a clean stop), and
    `xmr serve --watch`: a new picture becomes searchable through the API, the health answer
    says what the watcher does, and the watcher ends with the server."""
    import json
    import signal
    import subprocess
    import sys
    import urllib.request

    from tests.conftest import ROOT, live_server, run_xmr

    media, lib = tmp_path / "media", tmp_path / "lib"
    media.mkdir()
    _picture(media / "first.png", 0)
    wrong = run_xmr("--library", str(lib), "index", str(media), "--poll", "2")
    assert wrong.returncode == 2 and "--poll goes with --watch" in wrong.stderr
    proc = subprocess.Popen([sys.executable, "-m", "retrieval.cli", "--library", str(lib), "index", str(media),
                             "--model", random_model, "--watch", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        until(lambda: proc.poll() is not None or watch_status(lib) is not None, timeout=120, what="the watcher")
        second = run_xmr("--library", str(lib), "index", "--watch")
        assert second.returncode == 1 and "already watching" in second.stderr and "--wait" not in second.stderr
        _picture(media / "second.png", 1)
        with Library(lib) as opened:
            until(lambda: str(media / "second.png") in _items(opened), what="the watched picture")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped watching" in err and "Traceback" not in err, err
    assert watch_status(lib) is None

    def health(url: str) -> dict:
        with urllib.request.urlopen(url + "/api/health", timeout=30) as resp:
            return json.load(resp)

    with live_server(lib, "--watch") as (server, info):
        until(lambda: (health(info["url"]).get("watch") or {}).get("state") == "watching", timeout=120,
              what="the server's watcher")
        _picture(media / "third.png", 2)
        until(lambda: health(info["url"])["items"] == 3, what="the picture, through the server")
        until(lambda: health(info["url"])["watch"]["last_change"], what="the watcher's status after its run")
        watch = health(info["url"])["watch"]
        assert watch["roots"] == [str(media)] and watch["pending"] == 0 and watch["runs"] == 1, json.dumps(watch)
        server.send_signal(signal.SIGINT)
        assert server.wait(60) == 0
    assert watch_status(lib) is None  # the watcher ended with the server


def test_folders_indexed_later_are_watched_and_failed_runs_retried(tmp_path, media, random_model, monkeypatch):
    """A watcher of the library's roots (no paths: `xmr serve --watch`'s) also watches a folder
    indexed after it started; a run that fails (the database away) is tried again, not lost."""
    import indexer.watch
    from retrieval.errors import LibraryError

    monkeypatch.setattr(indexer.watch, "RETRY_S", 0.5)
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([media])
    later = tmp_path / "later"
    later.mkdir()
    with Running(lib, []) as r:
        assert r.w.changes.roots == [str(media)]
        lib.index([later])
        until(lambda: str(later) in r.w.changes.roots, what="the new root")
        real, calls = r.w.index, []

        def flaky(scope, reporter):
            calls.append(scope)
            if len(calls) == 1:
                raise LibraryError("the catalog cannot be reached")
            return real(scope, reporter)

        r.w.index = flaky
        _picture(later / "new.png", 3)
        until(lambda: str(later / "new.png") in _items(lib), what="the retried picture")
        assert len(calls) == 2 and any("failed (the catalog cannot be reached); trying again" in n for n in r.notes)
