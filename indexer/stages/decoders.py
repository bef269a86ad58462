"""Who runs DECODE: threads of this process, processes of this machine, or Ray tasks
(indexer.cluster.RayDecoder), behind one interface: `files(jobs, poll)` yields each job with a
`Source` to read its Header and segments from, in the order of the jobs (ids follow it)."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from dataclasses import replace
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, Protocol

from indexer.kinds import Segment, get_kind
from indexer.scan import MediaFile
from indexer.stages.context import DecodeContext, DecodeSetup
from indexer.stages.decode import Decoded, Header, Stream, decode_whole
from retrieval.errors import DecodeError, XmrError

Poll = Callable[[], None]


class Source(Protocol):
    """One file's decoding, as the pipeline reads it."""

    path: str

    def open(self, poll: Poll) -> Header:
        """Its Header; raises DecodeError for a file that cannot be read."""

    def segments(self, poll: Poll) -> Iterator[Segment]:
        """Its prepared segments; raises DecodeError."""


class Decoder(Protocol):
    def files(self, jobs: Iterable[MediaFile], poll: Poll) -> Iterator[tuple[MediaFile, Source]]: ...

    def close(self) -> None:
        """Stop the workers (also mid-run, after an interrupt)."""


class WholeFile:
    """A Source over a file decoded whole elsewhere (a process, a Ray task)."""

    def __init__(self, decoded: Decoded) -> None:
        self.path, self.decoded = decoded.path, decoded

    def open(self, poll: Poll) -> Header:
        d = self.decoded
        if d.error is not None:
            raise DecodeError(d.error)
        return Header(get_kind(d.kind) if d.kind else None, d.phash, d.facts)

    def segments(self, poll: Poll) -> Iterator[Segment]:
        return iter(self.decoded.segments)


class ThreadDecoder:
    """Decode threads sharing this process's readers; a file's segments are streamed (at most
    `depth` waiting), and `window` files are decoded ahead of the one being embedded."""

    def __init__(self, ctx: DecodeContext, workers: int, batch_size: int) -> None:
        self.ctx = ctx
        self.window = max(4 * workers, 2 * batch_size)
        self.depth = max(2, batch_size // 2)
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xmr-decode")

    def files(self, jobs: Iterable[MediaFile], poll: Poll) -> Iterator[tuple[MediaFile, Source]]:
        ahead: deque[tuple[MediaFile, Stream]] = deque()
        todo = iter(jobs)
        while True:
            while len(ahead) < self.window and (mf := next(todo, None)) is not None:
                stream = Stream(mf.path, mf.size, self.depth, self.stop)
                self.pool.submit(stream.produce, self.ctx)
                ahead.append((mf, stream))
            if not ahead:
                return
            yield ahead.popleft()

    def close(self) -> None:
        self.stop.set()  # workers waiting to hand over segments give up
        self.pool.shutdown(wait=True, cancel_futures=True)


_process_ctx: DecodeContext | None = None


def _logging_of_this_process() -> tuple[int, str | None]:
    """The root logger's level and format, for decode processes to say things the same way."""
    root = logging.getLogger()
    fmt = getattr(root.handlers[0].formatter, "_fmt", None) if root.handlers and root.handlers[0].formatter else None
    return root.level, fmt


def _start_process(setup: DecodeSetup, parent: int, logs: tuple[int, str | None]) -> None:
    """A decode process: Ctrl-C is the parent's to act on (it stops the pool at a safe point),
    and it ends when the parent does, however that ends (kill -9: no one closes its pipes)."""
    import signal

    global _process_ctx
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if logs[1] is not None:
        logging.basicConfig(level=logs[0], format=logs[1])
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="xmr-parent-watch").start()
    _process_ctx = DecodeContext(setup)


def _exit_with(parent: int) -> None:
    import time

    while True:
        time.sleep(0.5)
        try:
            os.kill(parent, 0)
        except (ProcessLookupError, PermissionError):  # gone (or its pid reused by another user's)
            os._exit(1)


def _decode_in_process(path: str, size: int) -> Decoded:
    assert _process_ctx is not None
    return decode_whole(path, size, _process_ctx)


def quiet_readers(setup: DecodeSetup) -> DecodeSetup:
    """The setup for a worker: its readers hand a missing reader's reason to the run (said once)."""
    return replace(setup, readers=replace(setup.readers, tell=False))


class ProcessDecoder:
    """Decode processes (forkserver: never a fork of a process running torch's threads), each
    with its own readers; whole files come back, `window` of them ahead."""

    def __init__(self, setup: DecodeSetup, workers: int, on_engines: Callable[..., None]) -> None:
        import multiprocessing

        self.window = 4 * workers
        self.on_engines = on_engines
        self._processes: dict[int, Any] = {}
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"),
                                        initializer=_start_process,
                                        initargs=(quiet_readers(setup), os.getpid(), _logging_of_this_process()))

    def files(self, jobs: Iterable[MediaFile], poll: Poll) -> Iterator[tuple[MediaFile, Source]]:
        ahead: deque[tuple[MediaFile, Future[Decoded]]] = deque()
        todo = iter(jobs)
        while True:
            try:
                while len(ahead) < self.window and (mf := next(todo, None)) is not None:
                    ahead.append((mf, self.pool.submit(_decode_in_process, mf.path, mf.size)))
                    self._note_processes()
                if not ahead:
                    return
                mf, future = ahead[0]
                decoded = self._result(future, poll)
            except BrokenProcessPool:  # a decoder crashed its process (threads would have taken xmr with it)
                raise XmrError(f"a decode process died while reading {ahead[0][0].path if ahead else 'a file'} or a "
                               "file decoded beside it; run again to resume, or index with --decoder threads") from None
            ahead.popleft()
            self.on_engines(decoded.engines, decoded.notes)
            yield mf, WholeFile(decoded)

    @staticmethod
    def _result(future: Future[Decoded], poll: Poll) -> Decoded:
        while True:
            poll()
            try:
                return future.result(timeout=0.2)
            except TimeoutError:
                continue

    def _note_processes(self) -> None:
        """The pool's processes, kept here: a broken pool forgets them (its `_processes` is None)."""
        self._processes.update(getattr(self.pool, "_processes", None) or {})

    def close(self) -> None:
        """Stop the pool; processes still busy (a run interrupted, or a pool broken by a dying
        process, where CPython may wait forever for a worker it started after the death) are
        ended after a grace of a few seconds: they hold nothing that must be kept."""
        import time

        self._note_processes()
        processes = list(self._processes.values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + 5
        for p in processes:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(1)
