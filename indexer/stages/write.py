"""WRITE: the one writer of an index run. Rows are added (flush -> item ids), then the vectors
of every model under those ids; a checkpoint saves the changed indexes under new names and one
SQL commit makes them current with the rows. Writes that could leave rows and vectors apart are
marked (`writing`), so an interrupt inside one goes back to the last checkpoint (`abort`)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Collection, Iterator, Sequence

from sqlalchemy.orm import Session

from indexer import face_catalog, words
from indexer.added_index import AddedIndex
from indexer.catalog import AudioRaw, File, Item, drop_files
from indexer.facts import FACTS_VERSION
from indexer.signals import signals_deferred
from indexer.stages.context import FACES, MAIN
from indexer.stages.embed import FileWork
from indexer.stages.report import IndexReport
from indexer.store import Store


class _Fanout:
    """Removals that reach every model's index (catalog.drop_files takes one)."""

    def __init__(self, indexes: list[Any]) -> None:
        self.indexes = [v for v in indexes if v is not None]

    def remove(self, ids: Sequence[int]) -> int:
        return max([v.remove(ids) for v in self.indexes] or [0])


class Writer:
    def __init__(self, session: Session, store: Store, report: IndexReport, known: dict[str, File],
                 added: dict[str, AddedIndex], checkpoint_seconds: float,
                 missing: Callable[[], Collection[str]] = tuple) -> None:
        self.s, self.store, self.report, self.known = session, store, report, known
        self.added, self.checkpoint_seconds = added, checkpoint_seconds
        self.missing = missing  # the readers this run could not have (indexer.readers: notes)
        self.mutating = False
        self.last_checkpoint = time.perf_counter()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Marks catalog/index writes: an interrupt inside may leave rows and vectors apart."""
        self.mutating = True
        yield
        self.mutating = False

    def drop(self, file_ids: Sequence[int]) -> None:
        """Files, their items and the items' vectors in every model's index."""
        indexes = [self.store.loaded_vectors, *(a.vecs for a in self.added.values())]
        drop_files(self.s, _Fanout(indexes), list(file_ids))

    def forget(self, path: str) -> None:
        """A file that could not be read this time: its old vectors describe content that is gone."""
        if path in self.known:
            with self.writing():
                self.drop([self.known.pop(path).id])

    def write(self, files: list[FileWork]) -> None:
        """Rows for embedded files (replacing older versions), then their vectors under the new ids."""
        with self.writing():
            for w in files:
                self._write_one(w)

    def _write_one(self, w: FileWork) -> None:
        import numpy as np

        row = self.known.get(w.mf.path)
        if row is not None:
            self.drop([row.id])
            self.report.updated += 1
        else:
            self.report.new += 1
        facts = dict(w.facts)
        if "duration" not in facts and any(seg.end is not None for seg in w.segments):
            facts["duration"] = max(seg.end for seg in w.segments if seg.end is not None)
        missing = self.missing()
        unread = ",".join(r for r in w.kind.readers if r in missing) or None
        f = File(path=w.mf.path, modality=w.kind.name, size=w.mf.size, mtime_ns=w.mf.mtime_ns, phash=w.phash,
                 facts_version=FACTS_VERSION, unread=unread, **facts)
        self.s.add(f)
        self.s.flush()
        items = [Item(file_id=f.id, modality=w.kind.name, chunk=g.chunk, char_start=g.char_start, char_end=g.char_end,
                      snippet=g.snippet, start=g.start, end=g.end, embedder=g.embedder, page=g.page,
                      confidence=g.confidence) for g in w.segments]
        self.s.add_all(items)
        self.s.flush()
        words.add(self.s, [(it.id, it.snippet) for it in items if it.snippet])
        self.s.add_all(AudioRaw(item_id=it.id, vector=np.asarray(r, np.float32).tobytes())
                       for it, r in zip(items, w.raw) if r is not None)
        for key, vecs in self._indexes().items():
            got = [(it.id, v) for it, v in zip(items, w.vectors.get(key, ())) if v is not None]
            if got:
                vecs.add(np.stack([v for _, v in got]), [i for i, _ in got])
        self._faces(w, f, items)
        self.report.items += len(items)

    def _faces(self, w: FileWork, f: File, items: list[Item]) -> None:
        """The faces found in its pictures (the face model's "vectors": lists of faces). The file
        counts as looked at only when every picture was (Ray's workers look at none)."""
        found = w.vectors.get(FACES)
        if found is None:
            return
        pictures = [(it.id, faces) for it, faces in zip(items, found) if it.embedder == "image"]
        self.report.faces += face_catalog.add(self.s, f.id, [(i, fs) for i, fs in pictures if fs])
        if all(fs is not None for _, fs in pictures):
            f.faces_seen = face_catalog.FACES_VERSION

    def _indexes(self) -> dict[str, Any]:
        out: dict[str, Any] = {MAIN: self.store.loaded_vectors} if self.store.loaded_vectors is not None else {}
        return out | {key: a.vecs for key, a in self.added.items()}

    def checkpoint(self) -> None:
        """Every changed index under a new name, then one commit makes them current with the rows."""
        with self.writing(), signals_deferred():
            for a in self.added.values():
                a.stage(self.s)
            self.store.commit(self.s)
            for a in self.added.values():
                a.committed()
        self.last_checkpoint = time.perf_counter()

    def maybe_checkpoint(self) -> None:
        if time.perf_counter() - self.last_checkpoint >= self.checkpoint_seconds:
            self.checkpoint()

    def abort(self) -> None:
        """After an interrupt or failure: back to the last checkpoint if a write was cut short,
        else the work done so far is committed (files still pending are redone next time)."""
        with signals_deferred():  # a second Ctrl-C must not cut the rollback or last commit short
            if self.mutating:
                self.s.rollback()
                self.store.forget_uncommitted()
            else:
                self.checkpoint()
