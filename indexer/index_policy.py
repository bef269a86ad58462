"""When a library's FAISS index is rebuilt or retuned: the policy (automatic or fixed, recall
target, memory budget) recorded in the catalog, applied at the end of every index run.

The choices themselves (which index for which size, how nprobe meets the recall target) are
indexer.autoindex's; this module decides when to apply them and records the outcome.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from indexer.autoindex import DEFAULT_RECALL
from indexer.catalog import get_meta, set_meta
from indexer.stages.report import Reporter
from indexer.store import Store
from indexer.vectors import full_factory
from retrieval.errors import EncoderMismatchError, UsageError

log = logging.getLogger(__name__)


class IndexPolicy:
    """`auto` (no --factory given when the library was made): exact search while small, an IVF
    index tuned to `recall` within `max_memory` once large."""

    def __init__(self, store: Store, *, factory: str | None = None, recall: float | None = None,
                 max_memory: int | None = None, has_vectors: bool = False) -> None:
        with store.Session() as s:
            recorded = get_meta(s, "index_policy")
        self.store = store
        self.settings: dict[str, Any] = recorded or {"auto": factory is None, "recall": DEFAULT_RECALL, "max_memory": None}
        if recall is not None:
            if not 0.0 < recall <= 1.0:
                raise UsageError(f"--recall must be in (0, 1], got {recall}")
            self.settings["recall"] = recall
        if max_memory is not None:
            if max_memory <= 0:
                raise UsageError("--max-memory must be positive")
            self.settings["max_memory"] = max_memory
        if factory and has_vectors and full_factory(factory) != store.factory:
            raise EncoderMismatchError(
                f"this library uses the FAISS index {store.factory!r}; it cannot be changed to {full_factory(factory)!r}"
            )

    def record(self, session: Session) -> None:
        """Record the index type of a new library and the policy, when they changed."""
        if get_meta(session, "factory") is None:
            set_meta(session, "factory", self.store.factory)
        if get_meta(session, "index_policy") != self.settings:
            set_meta(session, "index_policy", self.settings)

    def maybe_reindex(self, session: Session, reporter: Reporter | None = None) -> dict[str, Any] | None:
        """Move to the index the policy wants for the current size, once, when a threshold is
        crossed (or re-tune when the recall target changed). Returns the new tuning, if any."""
        from indexer import autoindex

        store = self.store
        vecs = store.loaded_vectors
        if not self.settings.get("auto") or vecs is None or vecs.ntotal == 0:
            return None
        target = float(self.settings.get("recall") or DEFAULT_RECALL)
        want = autoindex.wants_rebuild(store.factory, vecs.ntotal, vecs.d, self.settings, store.tuning)
        retune = want is None and vecs.is_ivf and (store.tuning or {}).get("target") != target
        if want is None and not retune:
            return None
        source = self._source(session)
        factory = store.factory
        if retune:
            tuning = {**(store.tuning or {}), **autoindex.tune_streaming(vecs, source, target)}
            new = vecs
        else:
            bar = (reporter or Reporter()).bar(f"building {want} index", vecs.ntotal, "vector")
            try:
                new, tuning = autoindex.build_streaming(want, source, target, progress=bar.update)
            finally:
                bar.close()
            factory = full_factory(want)
        store.replace_vectors(new, factory, tuning)
        set_meta(session, "factory", factory)
        set_meta(session, "index_tuning", tuning)
        set_meta(session, "index_policy", self.settings)
        log.info("vector index: %s, tuning %s", factory, tuning)
        return tuning

    def _source(self, session: Session) -> Any:
        """What a rebuild reads: the full-precision vectors of the items the catalog holds, a
        chunk at a time; a library whose index was compressed before they were kept reads the
        index's own vectors (in memory, and as precise as its codes)."""
        import numpy as np
        from sqlalchemy import select

        from indexer.catalog import Item
        from indexer.full_vectors import ArraySource

        full, vecs = self.store.full, self.store.loaded_vectors
        if full is not None and full.complete:
            return full.view(np.fromiter(session.scalars(select(Item.id).order_by(Item.id)), np.int64))
        assert vecs is not None
        return ArraySource(*vecs.all_vectors())
