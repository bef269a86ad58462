"""scan -> diff against the catalog -> decode in threads -> batch encode -> rows + vectors -> checkpoint."""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.audio import audio_windows
from indexer.catalog import AudioRaw, File, Item, Root, drop_files
from indexer.decode import chunk_text, load_image, partial_hash, read_text
from indexer.scan import MediaFile, scan, sniff_modality
from retrieval.encoders.base import IMAGE, TEXT, Encoder
from retrieval.errors import DecodeError, UsageError, XmrError
from retrieval.paths import display_path

AUDIO = "audio"

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
class _Window:
    index: int
    start: float
    end: float
    features: dict[str, np.ndarray]


@dataclass
class _Decoded:
    mf: MediaFile
    modality: str
    phash: str
    payloads: list[Any]  # preprocessed image tensors, text Chunks, or audio _Windows
    vectors: np.ndarray | None = None
    raw: np.ndarray | None = None  # audio: the windows' own CLAP vectors


def _decode(mf: MediaFile, encoder: Encoder, audio_encoder: Callable[[], Any]) -> _Decoded | None:
    """Runs in a worker thread. None: not a media file after all."""
    try:
        modality = sniff_modality(mf.path)
        if modality is None:
            return None
        phash = partial_hash(mf.path, mf.size)
        if modality == IMAGE:
            payloads: list[Any] = [encoder.preprocess_image(load_image(mf.path, getattr(encoder, "input_size", None)))]
        elif modality == AUDIO:
            aenc = audio_encoder()
            payloads = [
                _Window(w.index, w.start, w.end, aenc.features(w.samples))
                for w in audio_windows(mf.path, aenc.sampling_rate, aenc.window_samples)
            ]
        else:
            chunks = chunk_text(read_text(mf.path), encoder.count_tokens, encoder.context_length)
            payloads = list(chunks)
        return _Decoded(mf, modality, phash, payloads)
    except DecodeError:
        raise
    except FileNotFoundError:
        raise DecodeError("file vanished") from None
    except PermissionError:
        raise DecodeError("permission denied") from None
    except Exception as e:  # one strange file must never stop the run
        raise DecodeError(f"{type(e).__name__}: {e}") from None


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _encode_in_batches(fn: Callable[[list[Any]], np.ndarray], xs: list[Any], batch_size: int) -> list[np.ndarray]:
    return [fn(xs[i : i + batch_size]) for i in range(0, len(xs), batch_size)]


def _default_on_skip(path: str, reason: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"skipping {display_path(path)}: {reason}", file=sys.stderr)


def _apply(session: Session, vectors: Any, decoded: list[_Decoded], known: dict[str, File], report: IndexReport) -> None:
    """Rows for encoded files (replacing older versions), then their vectors under the new item ids."""
    for d in decoded:
        row = known.get(d.mf.path)
        if row is not None:
            drop_files(session, vectors, [row.id])
            report.updated += 1
        else:
            report.new += 1
        f = File(path=d.mf.path, modality=d.modality, size=d.mf.size, mtime_ns=d.mf.mtime_ns, phash=d.phash)
        session.add(f)
        session.flush()
        if d.modality == IMAGE:
            items = [Item(file_id=f.id, modality=IMAGE, chunk=0)]
        elif d.modality == AUDIO:
            items = [Item(file_id=f.id, modality=AUDIO, chunk=w.index, start=w.start, end=w.end) for w in d.payloads]
        else:
            items = [
                Item(file_id=f.id, modality=TEXT, chunk=c.index, char_start=c.char_start, char_end=c.char_end, snippet=c.text)
                for c in d.payloads
            ]
        session.add_all(items)
        session.flush()
        if d.raw is not None:
            session.add_all(AudioRaw(item_id=it.id, vector=np.asarray(r, np.float32).tobytes()) for it, r in zip(items, d.raw))
        vectors.add(d.vectors, [it.id for it in items])
        report.items += len(items)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C / SIGTERM until the block is done, then raise KeyboardInterrupt.

    A checkpoint is short, and a signal landing inside SQLAlchemy's commit can leave its
    transaction half closed (seen as ResourceClosedError instead of a clean stop). Signal
    handlers can only be swapped in the main thread; elsewhere this does nothing.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    kinds = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    previous = {k: signal.getsignal(k) for k in kinds}
    for k in kinds:
        signal.signal(k, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for k, handler in previous.items():
            signal.signal(k, handler)
    if caught:
        raise KeyboardInterrupt


def _roots(session: Session, paths: Sequence[str]) -> list[str]:
    if not paths:
        roots = list(session.scalars(select(Root.path).order_by(Root.path)))
        if not roots:
            raise UsageError("no folders to index: give one or more paths")
        return roots
    roots = []
    known = set(session.scalars(select(Root.path)))
    for p in paths:
        root = os.path.abspath(os.path.expanduser(p))
        if root not in roots:
            roots.append(root)
        if root not in known and os.path.exists(root):
            session.add(Root(path=root))
            known.add(root)
    return roots


def run_index(
    lib: Any,
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
    queues behind it (see Library.write_lock).
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

    with lib.write_lock(wait, on_wait), lib.Session() as s:
        roots = _roots(s, paths)
        encoder: Encoder = lib.encoder
        batch_size = batch_size or int(getattr(encoder, "batch_size", 32))
        t0 = time.perf_counter()  # indexing time, not model loading time
        lib.record_encoder(s)
        vecs = lib.vectors(create=True)
        lib.repair_vectors(s)
        lib.sync_bridge(s)

        audio_failed = False

        def audio_encoder() -> Any:
            """Loaded by the first decode worker that meets a sound; a failure is told in full once."""
            nonlocal audio_failed
            try:
                return lib.audio_encoder
            except XmrError as e:
                told, audio_failed = audio_failed, True
                raise DecodeError("no audio model (see above)" if told else f"no audio model: {e}") from None

        scanned = {mf.path: mf for mf in scan(roots, skip, skip_dirs=[lib.path])}
        # A root that is missing (an unmounted drive, say) is left alone, not emptied.
        present = [r for r in roots if os.path.exists(r)]
        known = {f.path: f for f in s.scalars(select(File)) if _under(f.path, present)}
        gone = {p: f for p, f in known.items() if p not in scanned}
        jobs: list[MediaFile] = []
        by_size: dict[int, list[File]] = {}
        for f in gone.values():
            by_size.setdefault(f.size, []).append(f)
        for path, mf in scanned.items():
            old = known.get(path)
            if old is not None:
                if (old.size, old.mtime_ns) == (mf.size, mf.mtime_ns):
                    report.unchanged += 1
                else:
                    jobs.append(mf)
                continue
            match = None
            if by_size.get(mf.size):
                try:
                    ph = partial_hash(path, mf.size)
                except OSError:
                    ph = None
                match = next((f for f in by_size[mf.size] if f.phash == ph), None)
            if match is not None:  # the same content at a new path: keep its vectors
                by_size[mf.size].remove(match)
                del gone[match.path]
                match.path, match.mtime_ns = path, mf.mtime_ns
                report.moved += 1
            else:
                jobs.append(mf)
        drop_files(s, vecs, [f.id for f in gone.values()])
        report.removed = len(gone)
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

        def checkpoint() -> None:
            nonlocal last_checkpoint
            with writing(), signals_deferred():
                lib.save_and_commit(s)
            last_checkpoint = time.perf_counter()

        def flush() -> None:
            if not pending:
                return
            for modality, fn, as_input in (
                (IMAGE, encoder.encode_images, lambda p: p),
                (TEXT, encoder.encode_text, lambda c: c.text),
            ):
                group = [d for d in pending if d.modality == modality]
                xs = [as_input(p) for d in group for p in d.payloads]
                if not xs:
                    continue
                xb = np.concatenate(_encode_in_batches(fn, xs, batch_size))
                offset = 0
                for d in group:
                    d.vectors = xb[offset : offset + len(d.payloads)]
                    offset += len(d.payloads)
            sounds = [d for d in pending if d.modality == AUDIO]
            if sounds:
                aenc = lib.audio_encoder
                feats = [w.features for d in sounds for w in d.payloads]
                raw = np.concatenate(_encode_in_batches(aenc.encode_audio, feats, batch_size))
                with writing():
                    lib.record_audio_encoder(s)
                    # The first sounds of a library fit its bridge (they also estimate the gap).
                    bridge = lib.bridge() or lib.fit_bridge(s, extra_audio=raw, progress=progress)
                mapped = bridge.map_audio(raw)
                offset = 0
                for d in sounds:
                    n = len(d.payloads)
                    d.raw, d.vectors = raw[offset : offset + n], mapped[offset : offset + n]
                    offset += n
            with writing():
                _apply(s, vecs, pending, known, report)
            pending.clear()

        window = max(4 * (workers or os.cpu_count() or 2), 2 * batch_size)
        pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2, thread_name_prefix="xmr-decode")
        queue: deque[tuple[MediaFile, Future]] = deque()
        todo = iter(jobs)
        bar = tqdm(total=len(jobs), unit="file", desc="indexing", disable=(not progress) if progress is not None else None, file=sys.stderr)
        try:
            while True:
                while len(queue) < window and (mf := next(todo, None)) is not None:
                    queue.append((mf, pool.submit(_decode, mf, encoder, audio_encoder)))
                if not queue:
                    break
                mf, fut = queue.popleft()
                try:
                    dec = fut.result()
                except DecodeError as e:
                    skip(mf.path, str(e))
                    if mf.path in known:  # its old vectors describe content that is gone
                        with writing():
                            drop_files(s, vecs, [known.pop(mf.path).id])
                    dec = None
                bar.update(1)
                if dec is not None:
                    pending.append(dec)
                    if sum(len(d.payloads) for d in pending) >= batch_size:
                        flush()
                        if time.perf_counter() - last_checkpoint >= checkpoint_seconds:
                            checkpoint()
            flush()
            with writing():
                lib.maybe_reindex(s, progress)
            checkpoint()
            lib.prune_thumbnails()  # also those a run killed before its pruning left behind
        except BaseException:
            report.interrupted = True
            pool.shutdown(wait=True, cancel_futures=True)
            if mutating:  # rows and vectors may disagree: go back to the last checkpoint
                s.rollback()
                lib.forget_uncommitted()
            else:  # keep the work done so far; pending decoded files are simply redone next time
                pending.clear()
                lib.save_and_commit(s)
            raise
        finally:
            bar.close()
            pool.shutdown(wait=False, cancel_futures=True)
            report.seconds = time.perf_counter() - t0
    return report
