"""Watching a library's folders: `xmr index --watch` here, `xmr serve --watch` as a child process
that runs it (its own model copy and write lock, killed or stopped like any index run)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Sequence

from indexer.diff import recorded_roots
from indexer.stages.options import IndexOptions
from indexer.stages.report import IndexReport, Reporter
from indexer.watch import Watcher, WatchOptions

if TYPE_CHECKING:
    from retrieval.library import Library


def library_roots(lib: Library) -> list[str]:
    """The folders (and files) indexed before, as `xmr index` with no paths refreshes them."""
    with lib.Session() as s:
        return recorded_roots(s)


def watcher(lib: Library, paths: Sequence[str], options: IndexOptions, reporter: Reporter,
            note: Callable[[str], None], watch: WatchOptions | None = None) -> Watcher:
    """A Watcher of `paths` (or the library's roots) whose runs are this library's index runs
    limited to what changed, queued behind any other writer."""
    given = [os.path.abspath(os.path.expanduser(p)) for p in paths]
    limited = replace(options, wait=True)

    def index(scope: list[str], rep: Reporter) -> IndexReport:  # no paths: every root, as it is now
        return lib.index(given, replace(limited, scope=tuple(scope)), reporter=rep)

    # Watching the library's roots (no paths given): a folder indexed later joins the watch.
    return Watcher(lib.path, given or library_roots(lib), index, reporter, note, watch,
                   None if given else lambda: library_roots(lib))


def run_watching(lib: Library, paths: Sequence[str], options: IndexOptions, first: Reporter, later: Reporter,
                 note: Callable[[str], None], watch: WatchOptions | None = None) -> IndexReport:
    """The usual index pass, then index changes until interrupted. Changes are heard from before
    the pass begins, so none made during it is missed. Returns the first pass's report."""
    with watcher(lib, list(paths), options, later, note, watch) as w:  # a second watcher is refused first
        if not w.changes.roots:
            from retrieval.errors import UsageError

            raise UsageError("no folders to watch: give one or more paths")
        report = w.first(lambda: lib.index(paths, options, reporter=first))
        note(f"indexed {lib.path}: {report.summary()}")
        how = "by looking every few seconds" if w.polling else "for changes"
        note(f"watching {len(w.changes.roots)} folder{'s' if len(w.changes.roots) != 1 else ''} {how} (Ctrl-C to stop)")
        w.loop(_stop_with_parent())
    return report


PARENT_ENV = "XMR_WATCH_PARENT"  # set by `xmr serve --watch`: its watcher ends with it, even killed


def _stop_with_parent() -> threading.Event:
    """An event set when the process named by PARENT_ENV is gone (this one is then re-parented)."""
    stop = threading.Event()
    parent = os.environ.get(PARENT_ENV)
    if parent and parent.isdigit():
        def look() -> None:
            while not stop.wait(1.0):
                if os.getppid() != int(parent):
                    stop.set()

        threading.Thread(target=look, name="xmr-watch-parent", daemon=True).start()
    return stop


class ChildWatcher:
    """`xmr serve --watch`: an `xmr index --watch` process for the served library, stopped with
    the server (SIGTERM: it ends at a safe point)."""

    def __init__(self, library: str | os.PathLike[str], db: str | None, device: str) -> None:
        cmd = [sys.executable, "-m", "retrieval.cli", "--library", str(library), "--device", device]
        if db:
            cmd += ["--db", db]
        env = {**os.environ, PARENT_ENV: str(os.getpid())}
        self.process = subprocess.Popen(cmd + ["index", "--watch", "--no-progress"], stdin=subprocess.DEVNULL, env=env)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
