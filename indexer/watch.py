"""A library that keeps itself current: watch its roots and index what changes.

The watcher holds the library's watch lock (one watcher per library), hears events through
indexer.watch_events, and hands each batch of settled paths to `index(scope)`: an ordinary index
run (PLAN -> DECODE -> EMBED -> WRITE, checkpointed, under the write lock) limited to those paths.
A root that disappears (an unmounted drive) is paused, its items kept, and looked at whole when
it comes back. What it does is written to the library's `watch.json` for the server's page.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from sqlalchemy.exc import SQLAlchemyError

from indexer.locks import watch_lock, watched
from indexer.stages.report import IndexReport, Reporter
from indexer.watch_events import Changes, Observer
from retrieval.errors import XmrError
from retrieval.paths import WATCH_FILE


@dataclass(frozen=True)
class WatchOptions:
    """How a watcher waits: files settle for `quiet_s`; a burst is cut into runs at most
    `max_wait_s` apart; `poll_s` polls instead of hearing events (network mounts)."""

    quiet_s: float = 1.0
    max_wait_s: float = 10.0
    poll_s: float | None = None
    roots_every_s: float = 1.0  # how often a root's presence is checked


IndexFn = Callable[[list[str], Reporter], IndexReport]
RETRY_S, RETRY_MAX_S = 5.0, 300.0  # a failed run's changes are tried again after 5 s, 10 s, ... 5 min


class OnceReporter(Reporter):
    """A watcher's runs tell each broken file once, not at every event that touches it again
    unchanged; a file gone before it could be read is passed over quietly. (No progress bars
    between a watcher's notes: Reporter's own.)"""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self._told: dict[str, tuple[int, int] | None] = {}

    def skip(self, path: str, reason: str) -> None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
        except OSError:
            st = None
        key = (st.st_size, st.st_mtime_ns) if st is not None else None
        if path in self._told and self._told[path] == key:
            return
        self._told[path] = key
        self.inner.skip(path, reason)

    def waiting(self, message: str) -> None:
        self.inner.waiting(message)


class Watcher:
    """Watch `roots` of the library in `folder`; `index(scope, reporter)` runs an index limited
    to the changed paths. Use as a context manager (it takes the watch lock and starts hearing),
    then `loop(stop)` until `stop` is set or a signal interrupts it."""

    def __init__(self, folder: Path, roots: Sequence[str], index: IndexFn, reporter: Reporter,
                 note: Callable[[str], None], options: WatchOptions | None = None,
                 roots_of: Callable[[], Sequence[str]] | None = None) -> None:
        self.folder, self.index, self.note = folder, index, note
        self.roots_of = roots_of  # the library's roots now: folders indexed later are watched too
        self.failures = 0  # runs that failed in a row (the next waits longer)
        self.options = options or WatchOptions()
        self.reporter = OnceReporter(reporter)
        self.changes = Changes([os.path.abspath(r) for r in roots], skip_dirs=[str(folder)])
        # A root that is a mount point is "there" only while mounted: the empty folder left by an
        # unmounted drive is not the drive.
        self._mounts = {r for r, d in self.changes.dirs.items() if os.path.ismount(d)}
        self.paused = [r for r in self.changes.roots if not self._there(r)]
        self.runs, self.last_change, self.state = 0, None, "starting"
        self._pending_shown = 0  # the pending count the status file last said
        self._stack = ExitStack()
        self._observer: Observer | None = None

    def __enter__(self) -> Watcher:
        self._stack.enter_context(watch_lock(self.folder))
        self._stack.callback(self._status_file().unlink, missing_ok=True)
        self._observer = Observer(self.changes, self.options.poll_s, self.note)
        self._stack.callback(self._observer.stop)
        for root in self.paused:
            self.note(f"{root} is not there (an unmounted drive?): watching it once it comes back")
        self.write_status()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    @property
    def polling(self) -> bool:
        return self._observer is not None and self._observer.polling

    def loop(self, stop: threading.Event) -> None:
        """Index settled changes until `stop` is set (or a KeyboardInterrupt: Ctrl-C, SIGTERM)."""
        o = self.options
        next_roots = 0.0
        self.state = "watching"
        self.write_status()
        while not stop.is_set():
            if stop.wait(min(0.25, o.quiet_s / 2)):  # not woken by each event: a burst is thousands
                break
            if time.monotonic() >= next_roots:
                self._check_roots()
                next_roots = time.monotonic() + o.roots_every_s
            # Polling hears a file being written once per look: it has settled after more than that.
            quiet = max(o.quiet_s, 1.5 * self._observer.interval) if self.polling else o.quiet_s
            scope = self.changes.take(quiet, o.max_wait_s, self.paused)
            if scope:
                self._run(scope)
            elif self._pending_shown != len(self.changes):
                self.write_status()

    def first(self, index: Callable[[], IndexReport]) -> IndexReport:
        """The usual pass over the roots, before the loop (changes meanwhile are heard)."""
        return self._indexing(index, ())

    def _run(self, scope: list[str]) -> None:
        try:
            report = self._indexing(lambda: self.index(scope, self.reporter), scope)
        except (XmrError, OSError, SQLAlchemyError) as e:  # a database away, a disk full: try again later
            self.failures += 1
            delay = min(RETRY_MAX_S, RETRY_S * 2 ** (self.failures - 1))
            self.changes.add(*scope, after=delay)
            self.state = "watching"
            self.note(f"indexing {len(scope)} change{'s' if len(scope) != 1 else ''} failed ({e}); "
                      f"trying again in {delay:g} s")
            self.write_status()
            return
        self.failures = 0
        if report.new + report.updated + report.moved + report.removed:
            self.note(f"{report.new} new, {report.updated} updated, {report.moved} moved, {report.removed} removed"
                      f"{f', {report.skipped} skipped' if report.skipped else ''}")

    def _indexing(self, index: Callable[[], IndexReport], scope: Sequence[str]) -> IndexReport:
        self.state = "indexing"
        self.write_status(scope)
        report = index()
        self.runs += bool(scope)  # the watcher's own runs, as its status counts them
        if report.new + report.updated + report.moved + report.removed:
            self.last_change = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.state = "watching" if scope else "starting"  # after the first pass, the loop says "watching"
        self.write_status()
        return report

    def _check_roots(self) -> None:
        """Watch roots indexed since; pause a root that is gone (its items are kept); look at
        all of it when it returns."""
        assert self._observer is not None
        try:
            now = list(self.roots_of()) if self.roots_of is not None else []
        except (XmrError, SQLAlchemyError):  # the catalog away for a moment: asked again next time
            now = []
        for root in now:
            if root not in self.changes.roots:
                self.changes.add_root(root)
                if os.path.ismount(self.changes.dirs[root]):
                    self._mounts.add(root)
                if self._there(root):
                    self._observer.resume(root)
                    self.note(f"watching {root} too")
                else:
                    self.paused.append(root)
                self.write_status()
        for root in self.changes.roots:
            there = self._there(root)
            if root in self.paused and there:
                self.paused.remove(root)
                self._observer.resume(root)
                self.changes.add(root)
                self.note(f"{root} is back: looking at what changed while it was away")
                self.write_status()
            elif root not in self.paused and not there:
                self.paused.append(root)
                self._observer.pause(root)
                self.note(f"{root} is gone (an unmounted drive?): its items are kept; watching for its return")
                self.write_status()

    def _there(self, root: str) -> bool:
        folder = self.changes.dirs[root]
        return os.path.ismount(folder) if root in self._mounts else os.path.exists(folder)

    def _status_file(self) -> Path:
        return self.folder / WATCH_FILE

    def write_status(self, scope: Sequence[str] = ()) -> None:
        """What the page's footer shows: written whole (temp file + rename), read by the server."""
        self._pending_shown = len(self.changes)
        status = {"pid": os.getpid(), "state": self.state, "roots": self.changes.roots, "paused": self.paused,
                  "polling": self.polling, "pending": len(self.changes) + len(scope), "runs": self.runs,
                  "last_change": self.last_change}
        tmp = self._status_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, self._status_file())


def watch_status(folder: Path) -> dict[str, Any] | None:
    """The running watcher's status (pending changes, paused roots, last change), or None."""
    if not watched(folder):
        return None
    try:
        return json.loads((folder / WATCH_FILE).read_text())
    except (OSError, ValueError):  # between the lock and its first status
        return dict(STARTING)


STARTING = {"state": "starting", "pending": 0, "paused": [], "polling": False, "runs": 0, "last_change": None}
