"""What a watcher hears: file-system events (watchdog: inotify, FSEvents, ReadDirectoryChangesW,
or polling where those are not to be had) turned into settled paths to index.

A path is *settled* once no event has touched it for `quiet` seconds: a file being copied or
downloaded keeps sending events, so it is read whole, after its last write. The watcher takes
settled paths in batches (`Changes.take`), so a burst of thousands of files is a few runs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from indexer.scan import ignored_under, under

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver, ObservedWatch

log = logging.getLogger(__name__)

POLL_S = 2.0  # how often a polling watcher looks, where events are not to be had


class Changes:
    """Paths that changed under `roots`, each with the time of its last event; thread-safe
    (watchdog's thread adds, the watcher's loop takes)."""

    def __init__(self, roots: Sequence[str], skip_dirs: Sequence[str] = ()) -> None:
        self.roots = list(roots)
        self.dirs = {r: watched_dir(r) for r in self.roots}  # what each root's watch is on
        self.skip_dirs = [os.path.abspath(d) for d in skip_dirs]
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def relevant(self, path: str) -> bool:
        """Under a root, not in the library's own folder, no hidden or temporary part."""
        root = next((r for r in self.roots if under(path, [r])), None)
        return root is not None and not under(path, self.skip_dirs) and not ignored_under(path, root)

    def add(self, *paths: str, after: float = 0.0) -> None:
        """Paths heard changing now (`after`: as if heard that many seconds from now)."""
        now = time.monotonic() + after
        with self._lock:
            for path in paths:
                if self.relevant(path):
                    self._last[path] = max(now, self._last.get(path, now))

    def add_root(self, root: str) -> None:
        """A root indexed since the watch began: watched too."""
        with self._lock:
            self.roots.append(root)
            self.dirs[root] = watched_dir(root)

    def everything(self) -> None:
        """Events were lost (the kernel's queue overflowed): every root is looked at again."""
        self.add(*self.roots)

    def __len__(self) -> int:
        with self._lock:
            return len(self._last)

    def take(self, quiet: float, max_wait: float, paused: Sequence[str] = ()) -> list[str]:
        """The settled paths, once the stream of events pauses for `quiet` seconds or the oldest
        has waited `max_wait` (a long burst is cut into runs); none under a paused root."""
        now = time.monotonic()
        with self._lock:
            waiting = {p: t for p, t in self._last.items() if not under(p, paused)}
            if not waiting:
                return []
            if now - max(waiting.values()) < quiet and now - min(waiting.values()) < max_wait:
                return []
            ready = sorted(p for p, t in waiting.items() if now - t >= quiet)
            for p in ready:
                del self._last[p]
        return ready


def _handler(changes: Changes) -> Any:
    from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirMovedEvent, EventsLostEvent,
                                 FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileModifiedEvent,
                                 FileMovedEvent, FileSystemEventHandler)

    # A folder's "modified" (a child changed) says nothing its children's events do not; opening,
    # reading and attribute changes (chmod, atime) change no content.
    wanted = (FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent, FileMovedEvent,
              DirCreatedEvent, DirDeletedEvent, DirMovedEvent)

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: Any) -> None:
            if isinstance(event, EventsLostEvent):
                log.warning("file-system events were lost: every watched folder is looked at again")
                changes.everything()
            elif isinstance(event, wanted):
                paths = [os.fsdecode(event.src_path)]
                if isinstance(event, (FileMovedEvent, DirMovedEvent)):  # a move: both ends (a rename keeps its vectors)
                    paths.append(os.fsdecode(event.dest_path))
                changes.add(*paths)

    return Handler()


def watched_dir(root: str) -> str:
    """The folder to watch for a root: itself, or a single file's folder. Decided by what is
    there when the watch starts (a folder that is gone then is taken to be a folder)."""
    return os.path.dirname(root) if os.path.isfile(root) else root


class Observer:
    """watchdog's observer for the watched roots: native events, or polling where the native
    watch cannot be set up (too few inotify watches, say) or `poll` asks for it."""

    def __init__(self, changes: Changes, poll: float | None, note: Callable[[str], None]) -> None:
        self.changes, self.note = changes, note
        self.polling = poll is not None
        self.interval = poll or POLL_S  # when polling
        self._watches: dict[str, ObservedWatch] = {}
        self._observer = self._start(poll)

    def _start(self, poll: float | None) -> BaseObserver:
        from watchdog.observers import Observer as NativeObserver
        from watchdog.observers.polling import PollingObserver

        if poll is None:
            native = NativeObserver()
            try:
                self._schedule(native)
                native.start()
                return native
            except OSError as e:
                self.note(f"cannot watch by file-system events ({e.strerror or e}); looking for changes every "
                          f"{POLL_S:g} s instead (on Linux, raise fs.inotify.max_user_watches to watch by events)")
                self._watches.clear()
                self.polling = True
        observer = PollingObserver(timeout=poll or POLL_S)
        self._schedule(observer)
        observer.start()
        return observer

    def _schedule(self, observer: BaseObserver) -> None:
        for root in self.changes.roots:
            if os.path.exists(self.changes.dirs[root]):
                self._watches[root] = observer.schedule(_handler(self.changes), self.changes.dirs[root], recursive=True)

    def pause(self, root: str) -> None:
        """Stop watching a root that is gone (its watch would only report its files' removal)."""
        watch = self._watches.pop(root, None)
        if watch is not None:
            try:
                self._observer.unschedule(watch)
            except (KeyError, OSError):  # already ended by the folder's removal
                pass

    def resume(self, root: str) -> None:
        self._watches[root] = self._observer.schedule(_handler(self.changes), self.changes.dirs[root], recursive=True)

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=10)
