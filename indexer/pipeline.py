"""scan -> diff against the catalog -> decode in threads -> batch encode -> rows + vectors -> checkpoint.

Each file is decoded by its kind (indexer.kinds) into segments, whose payloads are prepared by
the embedder each names (indexer.embedders) in the same worker thread; the model then gets
batches. Rows and vectors go to the store (indexer.store), which commits them together.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from sqlalchemy.orm import Session

from indexer.audio_bridge import AudioBridge
from indexer.catalog import AudioRaw, File, Item
from indexer.decode import decode_file, partial_hash
from indexer.diff import plan, roots_to_index
from indexer.embedders import Embedders
from indexer.index_policy import IndexPolicy
from indexer.kinds import MediaKind, Segment, sniff_kind
from indexer.kinds.base import read_failure
from indexer.models import Models
from indexer.scan import MediaFile, scan
from indexer.store import Store
from retrieval.errors import DecodeError, UsageError
from retrieval.paths import display_path

if TYPE_CHECKING:
    import numpy as np

OnSkip = Callable[[str, str], None]


@dataclass
class IndexReport:
    new: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0
    items: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    skipped_paths: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.items / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.new} new, {self.updated} updated, {self.moved} moved, {self.removed} removed, "
            f"{self.skipped} skipped, {self.unchanged} unchanged; {self.items} items encoded in "
            f"{self.seconds:.1f} s ({rate:.1f} items/s)"
        )


@dataclass
class _Decoded:
    mf: MediaFile
    kind: MediaKind
    phash: str
    segments: list[Segment]  # payloads prepared for their embedders
    vectors: list[Any] = field(default_factory=list)  # one per segment, once encoded
    raw: list[Any] = field(default_factory=list)  # the embedder's own vector, where it keeps one


def _decode(mf: MediaFile, embedders: Embedders) -> _Decoded | None:
    """Runs in a worker thread. None: not a media file after all."""
    try:
        kind = sniff_kind(mf.path)
        if kind is None:
            return None
        phash = partial_hash(mf.path, mf.size)
    except OSError as e:
        raise read_failure(e) from None
    segments = decode_file(kind, mf.path, embedders,
                           lambda seg: replace(seg, payload=embedders.get(seg.embedder).prepare(seg.payload)))
    return _Decoded(mf, kind, phash, segments)


def _default_on_skip(path: str, reason: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"skipping {display_path(path)}: {reason}", file=sys.stderr)


def _write_rows(session: Session, store: Store, decoded: list[_Decoded], known: dict[str, File], report: IndexReport) -> None:
    """Rows for encoded files (replacing older versions), then their vectors under the new item ids."""
    import numpy as np

    vecs = store.loaded_vectors
    for d in decoded:
        row = known.get(d.mf.path)
        if row is not None:
            store.drop_files(session, [row.id])
            report.updated += 1
        else:
            report.new += 1
        f = File(path=d.mf.path, modality=d.kind.name, size=d.mf.size, mtime_ns=d.mf.mtime_ns, phash=d.phash)
        session.add(f)
        session.flush()
        items = [
            Item(file_id=f.id, modality=d.kind.name, chunk=s.chunk, char_start=s.char_start, char_end=s.char_end,
                 snippet=s.snippet, start=s.start, end=s.end)
            for s in d.segments
        ]
        session.add_all(items)
        session.flush()
        session.add_all(AudioRaw(item_id=it.id, vector=np.asarray(r, np.float32).tobytes())
                        for it, r in zip(items, d.raw) if r is not None)
        if vecs is not None and items:
            vecs.add(np.stack(d.vectors), [it.id for it in items])
        report.items += len(items)


class Signals:
    """Ctrl-C / SIGTERM caught while a block runs: recorded by the handler, raised as
    KeyboardInterrupt where the code asks (`check`), and at the end of the block."""

    def __init__(self) -> None:
        self.caught: list[int] = []

    def check(self) -> None:
        if self.caught:
            self.caught.clear()
            raise KeyboardInterrupt


@contextmanager
def signals_deferred() -> Iterator[Signals]:
    """Hold Ctrl-C / SIGTERM until the block is done (or calls `check()`), then raise
    KeyboardInterrupt.

    A KeyboardInterrupt raised by a signal handler lands between any two bytecodes: inside
    SQLAlchemy's commit it left a transaction half closed (seen as ResourceClosedError), and
    inside a lock's acquire-release it can leave the lock held (logging's: decode threads then
    wait for it forever). So during an index run signals are only noted, and the run stops at
    the next safe point. Signal handlers can only be swapped in the main thread; elsewhere this
    does nothing.
    """
    import signal
    import threading

    signals = Signals()
    if threading.current_thread() is not threading.main_thread():
        yield signals
        return
    kinds = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    previous = {k: signal.getsignal(k) for k in kinds}
    for k in kinds:
        signal.signal(k, lambda signum, frame: signals.caught.append(signum))
    try:
        yield signals
    finally:
        for k, handler in previous.items():
            signal.signal(k, handler)
    signals.check()


def run_index(
    store: Store,
    models: Models,
    bridge: AudioBridge,
    policy: IndexPolicy,
    paths: Sequence[str] = (),
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    on_skip: OnSkip | None = None,
    checkpoint_seconds: float = 30.0,
    wait: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> IndexReport:
    """Bring the library up to date with `paths` (or every root indexed before).

    Unchanged files (same mtime and size) are not decoded; moved files (same size and partial
    hash) keep their vectors; files gone from under a root are removed. Work is checkpointed
    every `checkpoint_seconds` and at the end (the index saved under a new name, which the SQL
    commit of the rows then records), so an interrupted run loses at most one interval and the
    next run resumes. While another process writes, raises LibraryLockedError, or with `wait`
    queues behind it (see Store.write_lock).
    """
    if batch_size is not None and batch_size <= 0:
        raise UsageError("batch size must be positive")
    from tqdm import tqdm

    on_skip = on_skip or _default_on_skip
    report = IndexReport()

    def skip(path: str, reason: str) -> None:
        report.skipped += 1
        report.skipped_paths.append(path)
        on_skip(path, reason)

    with store.write_lock(wait, on_wait), store.Session() as s:
        roots = roots_to_index(s, paths)
        encoder = models.encoder
        batch_size = batch_size or int(getattr(encoder, "batch_size", 32))
        t0 = time.perf_counter()  # indexing time, not model loading time
        models.record(s)
        policy.record(s)
        store.vectors(create_dim=encoder.dim)  # the writer's own copy, changed in place until the end
        store.repair_vectors(s)
        bridge.sync(s)

        todo = plan(s, roots, scan(roots, skip, skip_dirs=[store.path]))
        known = todo.known
        report.unchanged, report.moved, report.removed = todo.unchanged, todo.moved, len(todo.gone)
        store.drop_files(s, [f.id for f in todo.gone])
        s.flush()

        pending: list[_Decoded] = []
        mutating = False
        last_checkpoint = time.perf_counter()

        @contextmanager
        def writing() -> Iterator[None]:
            """Marks catalog/index writes: an interrupt inside may leave rows and vectors apart."""
            nonlocal mutating
            mutating = True
            yield
            mutating = False

        def bridge_for(raw: np.ndarray) -> Any:
            with writing():  # the first sounds of a library fit its bridge (it re-projects stored ones)
                return bridge.bridge_for(s, raw, progress)

        embedders = Embedders(models, bridge_for)

        def checkpoint() -> None:
            nonlocal last_checkpoint
            with writing(), signals_deferred():
                store.commit(s)
            last_checkpoint = time.perf_counter()

        def flush() -> None:
            if not pending:
                return
            groups: dict[str, list[tuple[_Decoded, int]]] = {}
            for d in pending:
                d.vectors, d.raw = [None] * len(d.segments), [None] * len(d.segments)
                for i, seg in enumerate(d.segments):
                    groups.setdefault(seg.embedder, []).append((d, i))
            for name, members in groups.items():
                out = embedders.get(name).embed([d.segments[i].payload for d, i in members], batch_size)
                for j, (d, i) in enumerate(members):
                    d.vectors[i] = out.vectors[j]
                    d.raw[i] = out.raw[j] if out.raw is not None else None
            with writing():
                _write_rows(s, store, pending, known, report)
            pending.clear()

        window = max(4 * (workers or os.cpu_count() or 2), 2 * batch_size)
        pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2, thread_name_prefix="xmr-decode")
        queue: deque[tuple[MediaFile, Future]] = deque()
        jobs = iter(todo.jobs)
        bar = tqdm(total=len(todo.jobs), unit="file", desc="indexing", disable=(not progress) if progress is not None else None,
                   file=sys.stderr)

        def decode_and_encode(signals: Signals) -> None:
            while True:
                signals.check()  # a safe point: no write under way
                while len(queue) < window and (mf := next(jobs, None)) is not None:
                    queue.append((mf, pool.submit(_decode, mf, embedders)))
                if not queue:
                    break
                mf, fut = queue.popleft()
                try:
                    dec = fut.result()
                except DecodeError as e:
                    skip(mf.path, str(e))
                    if mf.path in known:  # its old vectors describe content that is gone
                        with writing():
                            store.drop_files(s, [known.pop(mf.path).id])
                    dec = None
                bar.update(1)
                if dec is not None and not dec.segments:
                    skip(mf.path, "nothing to index in it")
                    dec = None
                if dec is not None:
                    pending.append(dec)
                    if sum(len(d.segments) for d in pending) >= batch_size:
                        flush()
                        if time.perf_counter() - last_checkpoint >= checkpoint_seconds:
                            checkpoint()
            flush()

        try:
            with signals_deferred() as signals:  # a Ctrl-C stops the run at the next file, not mid-write
                decode_and_encode(signals)
                with writing():
                    policy.maybe_reindex(s, progress)
                checkpoint()
            store.prune_thumbnails()  # also those a run killed before its pruning left behind
        except BaseException:
            report.interrupted = True
            pool.shutdown(wait=True, cancel_futures=True)
            with signals_deferred():  # a second Ctrl-C must not cut the rollback or last commit short
                if mutating:  # rows and vectors may disagree: go back to the last checkpoint
                    s.rollback()
                    store.forget_uncommitted()
                else:  # keep the work done so far; pending decoded files are simply redone next time
                    pending.clear()
                    store.commit(s)
            raise
        finally:
            bar.close()
            pool.shutdown(wait=False, cancel_futures=True)
            report.seconds = time.perf_counter() - t0
    return report
