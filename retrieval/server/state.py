"""What a server keeps warm: the library view, its models and the locks around them."""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from retrieval.library import Library

log = logging.getLogger(__name__)


class LibraryState:
    """The served library, reopened whenever a writer has saved or committed.

    Every request asks `library()`, which compares the files' signatures (a few stat calls) and,
    when they changed, opens a new view; requests already running keep the view they started
    with, so none ever sees a half-updated one. Index files are replaced atomically by writers,
    so whatever file is opened is a whole one. Only one request reopens; the others go on with
    the current view meanwhile instead of waiting.

    Model calls and FAISS searches go through `compute` one at a time: the encoders and the
    index's per-call search settings (nprobe) are not thread-safe, and two queries at once on a
    few CPU cores would not finish sooner anyway.
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, db: str | None = None, device: str = "auto",
                 fast_queries: bool = True) -> None:
        self.compute = threading.Lock()
        self._reopening = threading.Lock()
        self.fast_queries = fast_queries
        self._lib = Library(path, db=db, device=device)
        self._signature = self._lib.disk_signature()
        self._warm_encoder: Any = None
        self.reloads = 0
        self.watcher: Any = None  # `xmr serve --watch`'s child (retrieval.watching.ChildWatcher)
        self._described: tuple[Library, dict[str, Any]] | None = None

    def describe(self, lib: Library) -> dict[str, Any]:
        """describe(lib), counted once per view: it changes only when a writer commits (then the
        view is reopened), and the page asks for it every few seconds while a watcher runs."""
        cached = self._described
        if cached is None or cached[0] is not lib:
            cached = self._described = (lib, describe(lib))
        return cached[1]

    def watch_status(self) -> dict[str, Any] | None:
        """What the library's watcher does (indexer.watch.watch_status); while this server's own
        watcher is still loading its model, "starting"."""
        from indexer.watch import STARTING, watch_status

        status = watch_status(self.path)
        if status is None and self.watcher is not None and self.watcher.running():
            return dict(STARTING)
        return status

    @property
    def path(self) -> Path:
        return self._lib.path

    @property
    def db_url(self) -> str:
        return self._lib.db_url

    def warm(self, lib: Library | None = None) -> None:
        """Load the model and the index now, not at the first query. An empty library has no
        model yet: it is loaded when an index run records one."""
        lib = lib or self._lib
        if lib.recorded_identity is None:
            return
        encoder = lib.encoder
        lib.vectors()
        if encoder is self._warm_encoder:  # a reopened view keeps the model: nothing to do
            return
        if self.fast_queries and hasattr(encoder, "enable_fast_queries"):
            encoder.enable_fast_queries()
        with self.compute:  # the first call of a model pays for allocations; not a user's query
            getattr(encoder, "encode_query", encoder.encode_text)(["warm up"])
        self._warm_encoder = encoder

    def library(self) -> Library:
        """The current view, reopened first if a writer changed the library since."""
        lib = self._lib
        if lib.disk_signature() != self._signature and self._reopening.acquire(blocking=False):
            try:
                signature = lib.disk_signature()
                if signature != self._signature:
                    new = lib.reopen()
                    self.warm(new)  # loads the new index (and a first model) before anyone uses it
                    self._lib, self._signature = new, signature
                    self.reloads += 1
                    vecs = new.vectors()
                    log.info("library changed on disk: reopened (%d vectors)", vecs.ntotal if vecs is not None else 0)
            finally:
                self._reopening.release()
        return self._lib


def describe(lib: Library) -> dict[str, Any]:
    """The few facts the page needs at start (what kinds of items there are, how many)."""
    from indexer.kinds import all_kinds
    from indexer.stats import read_stats

    with lib.engine.connect() as conn:
        st = read_stats(lambda sql: list(conn.exec_driver_sql(sql).fetchall()))
    last = st["last_indexed"]  # the newest file's indexing
    return {"library": str(lib.path.resolve()), "items": st["items"], "items_by_modality": st["items_by_modality"],
            "last_indexed": None if last is None else datetime.fromtimestamp(last, timezone.utc).isoformat(timespec="seconds"),
            "files": st["files"], "has_bridge": lib.bridge_path.exists(), "kinds": [k.describe() for k in all_kinds()]}
