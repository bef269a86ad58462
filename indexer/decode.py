"""Path -> segments through its kind, every failure a DecodeError(reason), streamed from a
decode thread to the pipeline (Stream); the partial hash that recognises a moved file. The
pipeline prints "skipping PATH: reason" and goes on."""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Any, Callable, Iterator

from indexer.facts import safe_facts
from indexer.kinds import MediaKind, Segment, sniff_kind
from indexer.kinds.base import DecodeContext, read_failure
from retrieval.errors import DecodeError

_PARTIAL_BLOCK = 64 * 1024

Prepare = Callable[[Segment], Segment]


def partial_hash(path: str, size: int) -> str:
    """Size + first and last 64 KiB: cheap, and enough to recognise a file that was moved."""
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(_PARTIAL_BLOCK))
        if size > 2 * _PARTIAL_BLOCK:
            f.seek(size - _PARTIAL_BLOCK)
            h.update(f.read(_PARTIAL_BLOCK))
    return h.hexdigest()


def decode_segments(kind: MediaKind, path: str, ctx: DecodeContext, prepare: Prepare) -> Iterator[Segment]:
    """The file's segments with prepared payloads (`prepare(segment)` turns what the kind
    decoded into model input, one segment at a time so a long file never sits in memory whole).
    Any failure is a DecodeError: one strange file must never stop a run."""
    try:
        for seg in kind.decode(path, ctx):
            yield prepare(seg)
    except DecodeError:
        raise
    except (FileNotFoundError, PermissionError) as e:
        raise read_failure(e) from None
    except Exception as e:
        raise DecodeError(f"{type(e).__name__}: {e}") from None


class Stopped(Exception):
    """The run ended while a decode worker still had segments to hand over."""


_END = object()


class Stream:
    """One file being decoded by a worker thread, handed to the pipeline segment by segment.

    The worker (`produce`) blocks when `depth` segments wait, so a long video is decoded only as
    fast as its segments are embedded and memory does not follow its length. The pipeline reads
    `open()` (the kind, or None: not a media file) and then `segments()`. `poll` is called while
    waiting (it raises to stop a run on Ctrl-C); `stop` makes a blocked worker give up.
    """

    def __init__(self, path: str, size: int, depth: int, stop: threading.Event) -> None:
        self.path, self.size, self.stop = path, size, stop
        self.kind: MediaKind | None = None
        self.phash = ""
        self.facts: dict[str, Any] = {}
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))

    def _put(self, value: Any) -> None:
        while True:
            try:
                self._q.put(value, timeout=0.2)
                return
            except queue.Full:
                if self.stop.is_set():
                    raise Stopped from None

    def produce(self, ctx: DecodeContext, prepare: Prepare) -> None:
        """Worker side: sniff, hash, decode; every outcome goes to the queue."""
        try:
            try:
                kind = sniff_kind(self.path)
                phash = partial_hash(self.path, self.size) if kind is not None else ""
            except OSError as e:
                raise read_failure(e) from None
            except DecodeError:
                raise
            except Exception as e:  # a kind's refine() opening a strange file: still only that file
                raise DecodeError(f"{type(e).__name__}: {e}") from None
            self._put((kind, phash, safe_facts(kind, self.path) if kind is not None else {}))
            if kind is not None:
                for seg in decode_segments(kind, self.path, ctx, prepare):
                    self._put(seg)
            self._put(_END)
        except Stopped:
            return
        except BaseException as e:  # noqa: BLE001 - handed to the pipeline's thread, raised there
            try:
                self._put(e)
            except Stopped:
                return

    def _get(self, poll: Callable[[], None]) -> Any:
        while True:
            poll()
            try:
                value = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(value, BaseException):
                raise value
            return value

    def open(self, poll: Callable[[], None]) -> MediaKind | None:
        self.kind, self.phash, self.facts = self._get(poll)
        return self.kind

    def segments(self, poll: Callable[[], None]) -> Iterator[Segment]:
        while (value := self._get(poll)) is not _END:
            yield value
