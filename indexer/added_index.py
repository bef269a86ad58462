"""One added model's FAISS index while it is written (indexer.extra_models): vectors for the same
item ids as the main index, saved under a new name at each checkpoint. `stage` saves it and
names the file in the catalog's meta inside the caller's transaction; the commit that follows
makes it current together with the rows (or the main index) it matches, and only then is the
file it replaces deleted. A run killed in between leaves an unnamed file, which the next writer
removes (Store.stray_files)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from indexer.catalog import get_meta, set_meta
from indexer.store import EXTRA_META, Store
from indexer.vectors import VectorIndex, full_factory

EXTRA_FACTORY = full_factory("Flat")


def committed_index(store: Store, entry: dict[str, Any]) -> VectorIndex | None:
    """An added model's committed index, read; None before its first checkpoint."""
    name = entry.get("index_file")
    if not name or not (store.path / name).exists():
        return None
    return VectorIndex.load(store.path / name, entry.get("factory") or EXTRA_FACTORY)


class AddedIndex:
    def __init__(self, store: Store, key: str, vecs: VectorIndex) -> None:
        self.store, self.key, self.vecs = store, key, vecs
        self._old: str | None = None

    @classmethod
    def open(cls, store: Store, session: Session, key: str, dim: int) -> AddedIndex:
        """The model's committed index, or a new one of `dim`."""
        entry = (get_meta(session, EXTRA_META) or {})[key]
        return cls(store, key, committed_index(store, entry) or VectorIndex.create(dim, "Flat"))

    def stage(self, session: Session) -> None:
        """Save the index under a new name and record it (uncommitted), if it changed."""
        all_ = get_meta(session, EXTRA_META) or {}
        entry = all_[self.key]
        old = entry.get("index_file")
        if not self.vecs.dirty and old:
            return
        n = int(old.rsplit("-", 1)[1].split(".")[0]) + 1 if old else 1
        name = f"vectors-{self.key}-{n}.faiss"
        self.vecs.save(self.store.path / name)
        entry.update(index_file=name, factory=self.vecs.factory, vectors=self.vecs.ntotal)
        set_meta(session, EXTRA_META, all_)
        self._old = old if old != name else None

    def committed(self) -> None:
        """After the commit: the replaced file goes."""
        if self._old:
            (self.store.path / self._old).unlink(missing_ok=True)
        self._old = None
        self.vecs.dirty = False
