"""scan -> diff against the catalog -> decode in threads -> batch encode -> rows + vectors -> checkpoint.

Each file is decoded by its kind (indexer.kinds) into segments, whose payloads are prepared by
the embedder each names (indexer.embedders) in the same worker thread; the model then gets
batches. Rows and vectors go to the store (indexer.store), which commits them together.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from sqlalchemy.orm import Session

from indexer import words
from indexer.audio_bridge import AudioBridge
from indexer.catalog import AudioRaw, File, Item, get_meta, set_meta
from indexer.decode import Stream
from indexer.diff import plan, roots_to_index
from indexer.facts import FACTS_VERSION, refresh_facts
from indexer.embedders import Embedders
from indexer.index_policy import IndexPolicy
from indexer.kinds import MediaKind, Segment
from indexer.kinds.video import SEGMENT_MAX_S, SEGMENT_MIN_S
from indexer.models import Models
from indexer.readers import Readers
from indexer.scan import MediaFile, scan
from indexer.signals import Signals, signals_deferred
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
    facts: dict[str, Any] = field(default_factory=dict)  # indexer.facts: date taken, camera, ...
    segments: list[Segment] = field(default_factory=list)  # payloads dropped once embedded
    vectors: list[Any] = field(default_factory=list)  # one per segment, once encoded
    raw: list[Any] = field(default_factory=list)  # the embedder's own vector, where it keeps one

    def add(self, seg: Segment) -> int:
        self.segments.append(seg)
        self.vectors.append(None)
        self.raw.append(None)
        return len(self.segments) - 1


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
        facts = dict(d.facts)
        if "duration" not in facts and any(seg.end is not None for seg in d.segments):
            facts["duration"] = max(seg.end for seg in d.segments if seg.end is not None)
        f = File(path=d.mf.path, modality=d.kind.name, size=d.mf.size, mtime_ns=d.mf.mtime_ns, phash=d.phash,
                 facts_version=FACTS_VERSION, **facts)
        session.add(f)
        session.flush()
        items = [
            Item(file_id=f.id, modality=d.kind.name, chunk=s.chunk, char_start=s.char_start, char_end=s.char_end,
                 snippet=s.snippet, start=s.start, end=s.end, embedder=s.embedder, page=s.page,
                 confidence=s.confidence)
            for s in d.segments
        ]
        session.add_all(items)
        session.flush()
        words.add(session, [(it.id, it.snippet) for it in items if it.snippet])
        session.add_all(AudioRaw(item_id=it.id, vector=np.asarray(r, np.float32).tobytes())
                        for it, r in zip(items, d.raw) if r is not None)
        if vecs is not None and items:
            vecs.add(np.stack(d.vectors), [it.id for it in items])
        report.items += len(items)


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
    segment_max: float | None = None,
    ocr: bool | None = None,
    speech_model: str | None = None,
    ray: str | bool | None = None,
    ship_bytes: bool = False,
) -> IndexReport:
    """Bring the library up to date with `paths` (or every root indexed before).

    Unchanged files (same mtime and size) are not decoded; moved files (same size and partial
    hash) keep their vectors; files gone from under a root are removed. Work is checkpointed
    every `checkpoint_seconds` and at the end (the index saved under a new name, which the SQL
    commit of the rows then records), so an interrupted run loses at most one interval and the
    next run resumes. While another process writes, raises LibraryLockedError, or with `wait`
    queues behind it (see Store.write_lock). `ray` (True, or a cluster address) decodes and
    encodes on a Ray cluster instead of this process's threads (indexer.cluster; `ship_bytes`:
    the driver sends the files' bytes); the writing stays here.
    """
    if batch_size is not None and batch_size <= 0:
        raise UsageError("batch size must be positive")
    if segment_max is not None and not SEGMENT_MIN_S <= segment_max <= 3600:
        raise UsageError(f"--segment-max must be between {SEGMENT_MIN_S:g} and 3600 seconds, got {segment_max:g}")
    if ray:  # a cluster that cannot be reached fails the run before anything is changed
        from indexer.cluster import connect

        connect(None if ray is True else str(ray))
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
        batch_given = batch_size is not None
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
        refresh_facts(s, todo.stale_facts, workers or os.cpu_count() or 2)

        todo_segments: list[tuple[_Decoded, int]] = []  # decoded, not yet embedded
        complete: list[_Decoded] = []  # every segment decoded: rows written once all are embedded
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

        # --segment-max is remembered: a later run cuts new videos as the earlier ones were cut
        if segment_max is not None:
            set_meta(s, "segment_max", segment_max)
        readers = Readers(s, ocr=ocr, speech_model=speech_model, device=models.device)
        readers.remember(s)
        embedders = Embedders(models, bridge_for, segment_max=float(get_meta(s, "segment_max", SEGMENT_MAX_S)),
                              readers=readers)

        def checkpoint() -> None:
            nonlocal last_checkpoint
            with writing(), signals_deferred():
                store.commit(s)
            last_checkpoint = time.perf_counter()

        def embed_pending() -> None:
            groups: dict[str, list[tuple[_Decoded, int]]] = {}
            for d, i in todo_segments:
                groups.setdefault(d.segments[i].embedder, []).append((d, i))
            todo_segments.clear()
            for name, members in groups.items():
                out = embedders.get(name).embed([d.segments[i].payload for d, i in members], batch_size)
                for j, (d, i) in enumerate(members):
                    d.vectors[i] = out.vectors[j]
                    d.raw[i] = out.raw[j] if out.raw is not None else None
                    d.segments[i] = replace(d.segments[i], payload=None)  # memory follows the batch, not the file

        def flush() -> None:
            embed_pending()
            if complete:
                with writing():
                    _write_rows(s, store, complete, known, report)
                    readers.record(s)
                complete.clear()

        workers = workers or os.cpu_count() or 2
        window = max(4 * workers, 2 * batch_size)
        depth = max(2, batch_size // 2)  # segments a file's worker may have waiting
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xmr-decode")
        queue: deque[tuple[MediaFile, Stream]] = deque()
        jobs = iter(todo.jobs)
        bar = tqdm(total=len(todo.jobs), unit="file", desc="indexing", disable=(not progress) if progress is not None else None,
                   file=sys.stderr)

        def prepare(seg: Segment) -> Segment:
            return replace(seg, payload=embedders.get(seg.embedder).prepare(seg.payload))

        def next_file(signals: Signals) -> _Decoded | None:
            """The next file's segments, embedded as they come; None when it was skipped."""
            mf, stream = queue.popleft()
            d: _Decoded | None = None
            try:
                kind = stream.open(signals.check)
                if kind is None:
                    return None
                d = _Decoded(mf, kind, stream.phash, stream.facts)
                for seg in stream.segments(signals.check):
                    todo_segments.append((d, d.add(seg)))
                    if len(todo_segments) >= batch_size:
                        embed_pending()
            except DecodeError as e:
                todo_segments[:] = [(x, i) for x, i in todo_segments if x is not d]
                skip(stream.path, str(e))
                forget(stream.path)
                return None
            finally:
                bar.update(1)
            if not d.segments:
                skip(stream.path, "nothing to index in it")
                return None
            return d

        def completed(d: _Decoded) -> None:
            """A file whose segments are all decoded: written with the next batch, checkpointed when due."""
            complete.append(d)
            if sum(len(x.segments) for x in complete) >= batch_size:
                flush()
                if time.perf_counter() - last_checkpoint >= checkpoint_seconds:
                    checkpoint()

        def forget(path: str) -> None:
            """A file that could not be read this time: its old vectors describe content that is gone."""
            if path in known:
                with writing():
                    store.drop_files(s, [known.pop(path).id])

        def decode_and_encode(signals: Signals) -> None:
            while True:
                signals.check()  # a safe point: no write under way
                while len(queue) < window and (mf := next(jobs, None)) is not None:
                    stream = Stream(mf.path, mf.size, depth, stop)
                    pool.submit(stream.produce, embedders, prepare)
                    queue.append((mf, stream))
                if not queue:
                    break
                d = next_file(signals)
                if d is not None:
                    completed(d)
            flush()

        def from_cluster(signals: Signals) -> None:
            import numpy as np

            from indexer import cluster
            from indexer.kinds import get_kind

            jobs = {mf.path: mf for mf in todo.jobs}
            setup = cluster.setup_for(models, readers, embedders.segment_max, batch_size if batch_given else None)
            address = None if ray is True else str(ray)
            for out in cluster.outcomes(address, list(jobs.values()), setup, ship_bytes=ship_bytes, poll=signals.check):
                bar.update(1)
                readers.adopt(out.engines)
                if out.error is not None or (out.kind is not None and not out.segments):
                    skip(out.path, out.error or "nothing to index in it")
                    forget(out.path)
                    continue
                if out.kind is None:
                    continue
                d = _Decoded(jobs[out.path], get_kind(out.kind), out.phash, out.facts, out.segments, out.vectors, out.raw)
                sounds = [i for i, v in enumerate(d.vectors) if v is None]
                if sounds:  # CLAP's vectors, into the library's space through its bridge
                    raw = np.stack([d.raw[i] for i in sounds])
                    for i, v in zip(sounds, bridge_for(raw).map_audio(raw)):
                        d.vectors[i] = v
                completed(d)
            flush()

        try:
            with signals_deferred() as signals:  # a Ctrl-C stops the run at the next file, not mid-write
                (from_cluster if ray else decode_and_encode)(signals)
                with writing():
                    policy.maybe_reindex(s, progress)
                checkpoint()
            store.prune_thumbnails()  # also those a run killed before its pruning left behind
        except BaseException:
            report.interrupted = True
            stop.set()  # workers waiting to hand over segments give up
            pool.shutdown(wait=True, cancel_futures=True)
            with signals_deferred():  # a second Ctrl-C must not cut the rollback or last commit short
                if mutating:  # rows and vectors may disagree: go back to the last checkpoint
                    s.rollback()
                    store.forget_uncommitted()
                else:  # keep the work done so far; pending decoded files are simply redone next time
                    complete.clear()
                    store.commit(s)
            raise
        finally:
            bar.close()
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            report.seconds = time.perf_counter() - t0
    return report
