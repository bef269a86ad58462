"""What an index run tells as it goes (a Reporter: progress bars, skipped files, waiting for the
lock) and what it did (IndexReport). The terminal form (tqdm) lives in the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Protocol

from retrieval.paths import display_path

log = logging.getLogger("xmr")


class Bar(Protocol):
    def update(self, n: int = 1) -> object: ...

    def close(self) -> None: ...


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class Reporter:
    """Says nothing but skipped files, as `skipping PATH: reason` warnings of the "xmr" logger.
    Subclass it to show more (the CLI's shows bars) or to collect skips (tests)."""

    def bar(self, desc: str, total: int | None, unit: str) -> Bar:
        """A progress bar for a stage of `total` units."""
        return _NoBar()

    def skip(self, path: str, reason: str) -> None:
        """A file left out of this run, and why; the run goes on."""
        log.warning("skipping %s: %s", display_path(path), reason)

    def waiting(self, message: str) -> None:
        """The run waits for another writer (`--wait`)."""


class CallbackReporter(Reporter):
    """Skipped files to a callback `on_skip(path, reason)`, waits to `on_wait(message)`."""

    def __init__(self, on_skip: Callable[[str, str], None] | None = None,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.on_skip, self.on_wait = on_skip, on_wait

    def skip(self, path: str, reason: str) -> None:
        (self.on_skip or super().skip)(path, reason)

    def waiting(self, message: str) -> None:
        if self.on_wait is not None:
            self.on_wait(message)


@dataclass
class IndexReport:
    new: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0
    items: int = 0
    faces: int = 0  # faces found (in this run's pictures, then in those caught up after it)
    seconds: float = 0.0
    interrupted: bool = False
    skipped_paths: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.items / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.new} new, {self.updated} updated, {self.moved} moved, {self.removed} removed, "
            f"{self.skipped} skipped, {self.unchanged} unchanged; {self.items} items encoded in "
            f"{self.seconds:.1f} s ({rate:.1f} items/s)" + (f"; {self.faces} faces found" if self.faces else "")
        )
