"""`xmr check`: do catalog rows, vectors and files agree? With `repair`, fix what can be fixed
without a model (the next `xmr index` re-encodes what had to be dropped)."""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from indexer import extra_models, face_index, full_vectors, words
from indexer.audio_bridge import AudioBridge
from indexer.catalog import File, Item, chunked
from indexer.store import Store
from indexer.vectors import VectorIndex
from retrieval.errors import LibraryError
from retrieval.paths import display_path


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    reread: list[str] = field(default_factory=list)  # files marked to be read again (repair)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_library(store: Store, bridge: AudioBridge, dim: int | None, repair: bool = False) -> CheckReport:
    """Verify rows <-> vectors <-> files (`dim`: the recorded encoder's). Rows and index are
    compared as of one commit, even while a writer is committing."""
    with store.write_lock() if repair else nullcontext():
        for _ in range(5):
            with store.Session() as s:
                # The first read starts the snapshot; the index must be the file it names.
                if store.refresh(s):
                    store.forget_loaded()
                name = store.index_path
                vecs = store.vectors(writable=repair)
                if store.index_path == name:
                    report = _check(s, store, bridge, vecs, dim, repair)
                    break
        else:
            raise LibraryError(f"{store.path} keeps changing under `xmr check`; try again")
    if repair and (pruned := store.prune_thumbnails()):
        report.repaired.append(f"removed {pruned} thumbnails of pictures no longer in the library")
    return report


def _check(s: Session, store: Store, bridge: AudioBridge, vecs: VectorIndex | None, dim: int | None,
           repair: bool) -> CheckReport:
    report = CheckReport()
    if vecs is not None and dim is not None and vecs.d != dim:
        report.problems.append(f"index dimension {vecs.d} differs from the encoder's {dim}")
    index_ids = vecs.ids() if vecs is not None else np.zeros(0, np.int64)
    if len(np.unique(index_ids)) != len(index_ids):
        report.problems.append("the index holds duplicate ids")
    ids = set(index_ids.tolist())
    row_ids = set(s.scalars(select(Item.id)))
    if orphans := ids - row_ids:
        report.problems.append(f"{len(orphans)} vectors have no catalog row (e.g. id {min(orphans)})")
    if missing := row_ids - ids:
        report.problems.append(f"{len(missing)} catalog items have no vector (e.g. id {min(missing)})")
    empty = list(s.scalars(select(File.path).where(~File.items.any())))
    if empty:
        report.problems.append(f"{len(empty)} files have no items (e.g. {empty[0]})")
    gone, changed = [], []
    for fid, path, size, mtime in s.execute(select(File.id, File.path, File.size, File.mtime_ns)):
        try:
            st = os.stat(path)
        except OSError:
            gone.append((fid, path))
            continue
        if (st.st_size, st.st_mtime_ns) != (size, mtime):
            changed.append(path)
    # Files that went or changed on disk are news for the next `xmr index`, not damage.
    if gone:
        report.warnings.append(
            f"{len(gone)} indexed files no longer exist (e.g. {display_path(gone[0][1])}); "
            "`xmr index` (or `check --repair`) removes them")
    if changed:
        report.warnings.append(f"{len(changed)} files changed since indexing (e.g. {display_path(changed[0])}); run `xmr index`")
    strays = store.stray_files()
    if strays and not repair:
        report.warnings.append(
            f"{len(strays)} files left by an interrupted run (e.g. {strays[0].name}); the next `xmr index` removes them")
    bridge.check(s, report.problems)
    extra_models.check(s, store, report.problems, report.warnings)
    faces_off = face_index.check(s, store.path, report.problems, report.warnings)
    full_vectors.check(store.path, s, vecs.d if vecs is not None else dim, row_ids, report.problems)
    words_off = _check_words(s, report.problems)
    if repair and (report.problems or gone):
        removed, dropped = store.repair_vectors(s)
        if removed:
            report.repaired.append(f"removed {removed} vectors without rows")
        if dropped:
            report.repaired.append(f"dropped {dropped} files whose vectors were missing (the next `xmr index` re-encodes them)")
        gone_ids = [fid for fid, _ in gone]
        empty_ids = list(s.scalars(select(File.id).where(~File.items.any())))
        if gone_ids or empty_ids:
            store.drop_files(s, gone_ids + empty_ids)
            report.repaired.append(f"removed {len(gone_ids)} missing and {len(empty_ids)} empty files from the catalog")
        bridge.repair(s, report.repaired)
        if words_off:
            report.repaired.append(f"rebuilt the full-text index ({words.rebuild(s)} entries)")
        if vecs is not None and len(np.unique(vecs.ids())) != vecs.ntotal:
            report.warnings.append("duplicate ids remain; rebuild the library with a fresh `xmr index`")
        store.commit(s)
    if repair and faces_off:
        face_index.repair(s, store.path, report.repaired)
    unread = _unread(s, report.warnings)
    if repair and unread:
        for part in chunked(unread):  # "changed": the next index run decodes them again
            s.execute(update(File).where(File.path.in_(part)).values(mtime_ns=-1))
        s.commit()
        report.reread = unread
        report.repaired.append(f"marked {len(unread)} file(s) to be read again")
    return report


def _unread(s: Session, warnings: list[str]) -> list[str]:
    """Files indexed while a reader their settings call for could not be had (File.unread)."""
    rows = s.execute(select(File.path, File.unread).where(File.unread.is_not(None)).order_by(File.path)).all()
    if rows:
        counts: dict[str, int] = {}
        for _, unread in rows:
            for what in unread.split(","):
                counts[what] = counts.get(what, 0) + 1
        said = ", ".join(f"{READER_WORDS.get(w, w)}: {n}" for w, n in sorted(counts.items()))
        one = len(rows) == 1
        warnings.append(f"{len(rows)} {'file was' if one else 'files were'} indexed without what "
                        f"{'its' if one else 'their'} settings call for ({said}; e.g. {display_path(rows[0][0])}): "
                        f"it could not be had then; `xmr check --repair` reads {'it' if one else 'them'} again")
    return [path for path, _ in rows]


READER_WORDS = {"ocr": "words in pictures", "speech": "speech", "sound": "sounds"}


def _check_words(s: Session, problems: list[str]) -> bool:
    """Does the full-text index hold exactly the items that have words? False when it does."""
    expected, have = words.expected_ids(s), words.indexed_ids(s)
    if missing := expected - have:
        problems.append(f"{len(missing)} items with words are not in the full-text index (e.g. id {min(missing)})")
    if extra := have - expected:
        problems.append(f"{len(extra)} full-text entries have no item with words (e.g. id {min(extra)})")
    return bool(missing or extra)
