"""DECODE: a path -> its kind, partial hash, facts and prepared segments, every failure a
DecodeError(reason) (the pipeline prints "skipping PATH: reason" and goes on). The same
`decode_events` runs in a decode thread (streamed to the pipeline through a `Stream`, so a long
video is decoded only as fast as it is embedded), in a decode process and in a Ray task
(`decode_whole`, one file's outcome at once)."""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from indexer.facts import FACT_FIELDS
from indexer.kinds import MediaKind, Segment, sniff_kind
from indexer.kinds.base import read_failure
from indexer.scan import partial_hash
from indexer.stages.context import DecodeContext
from retrieval.errors import DecodeError


def safe_facts(kind: MediaKind, path: str) -> dict[str, Any]:
    """A kind's facts of a file, {} (and never an exception) when they cannot be read."""
    try:
        got = kind.facts(path)
    except Exception:  # noqa: BLE001 - facts are extras: the file is still indexed without them
        return {}
    return {k: v for k, v in got.items() if k in FACT_FIELDS and v is not None}


@dataclass
class Header:
    """What a file is, known before its segments: its kind (None: not a media file), partial
    hash and facts (date taken, camera, ...)."""

    kind: MediaKind | None
    phash: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


def _header(path: str, size: int) -> Header:
    try:
        kind = sniff_kind(path)
        phash = partial_hash(path, size) if kind is not None else ""
    except OSError as e:
        raise read_failure(e) from None
    except DecodeError:
        raise
    except Exception as e:  # a kind's refine() opening a strange file: still only that file
        raise DecodeError(f"{type(e).__name__}: {e}") from None
    return Header(kind, phash, safe_facts(kind, path) if kind is not None else {})


def decode_segments(kind: MediaKind, path: str, ctx: DecodeContext) -> Iterator[Segment]:
    """The file's segments with prepared payloads, one at a time (a long file never sits in
    memory whole). Any failure is a DecodeError: one strange file must never stop a run."""
    try:
        for seg in kind.decode(path, ctx):
            yield ctx.prepare(seg)
    except DecodeError:
        raise
    except (FileNotFoundError, PermissionError) as e:
        raise read_failure(e) from None
    except Exception as e:
        raise DecodeError(f"{type(e).__name__}: {e}") from None


def decode_events(path: str, size: int, ctx: DecodeContext) -> Iterator[Header | Segment]:
    """The file's Header, then its prepared segments; raises DecodeError."""
    head = _header(path, size)
    yield head
    if head.kind is not None:
        yield from decode_segments(head.kind, path, ctx)


@dataclass
class Decoded:
    """One file decoded whole (a process or a Ray task hands this back): its segments, or the
    reason it was skipped; `vectors`/`raw` are filled where it was embedded remotely."""

    path: str
    kind: str | None = None
    phash: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)  # OCR/speech identities that read it
    notes: dict[str, str] = field(default_factory=dict)  # readers that could not be had, and why
    vectors: dict[str, list[Any]] | None = None  # by model key, one per segment (None: a sound to bridge)
    raw: list[Any] | None = None  # CLAP's own vectors of sounds


def decode_whole(path: str, size: int, ctx: DecodeContext, data: bytes | None = None) -> Decoded:
    """A file -> its Decoded (never raises for the file's own failures). With `data` (the
    driver shipped the bytes) the file is decoded from a private copy."""
    if data is not None:
        fd, tmp = tempfile.mkstemp(prefix="xmr-shipped-", suffix=os.path.splitext(path)[1][:16])
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            out = decode_whole(tmp, size, ctx)
        finally:
            os.unlink(tmp)
        out.path = path
        return out
    out = Decoded(path)
    try:
        events = decode_events(path, size, ctx)
        head = next(events)
        if head.kind is not None:
            out.kind, out.phash, out.facts = head.kind.name, head.phash, head.facts
            out.segments = list(events)  # type: ignore[arg-type]
    except DecodeError as e:
        out.error, out.segments = str(e), []
    out.engines, out.notes = ctx.readers.used(), dict(ctx.readers.notes)
    return out


class Stopped(Exception):
    """The run ended while a decode worker still had segments to hand over."""


_END = object()


class Stream:
    """One file being decoded by a worker thread, handed to the pipeline segment by segment.

    The worker (`produce`) blocks when `depth` segments wait, so a long video is decoded only as
    fast as its segments are embedded and memory does not follow its length. The pipeline reads
    `open()` (the Header) and then `segments()`. `poll` is called while waiting (it raises to
    stop a run on Ctrl-C); `stop` makes a blocked worker give up.
    """

    def __init__(self, path: str, size: int, depth: int, stop: threading.Event) -> None:
        self.path, self.size, self.stop = path, size, stop
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))

    def _put(self, value: Any) -> None:
        while True:
            try:
                self._q.put(value, timeout=0.2)
                return
            except queue.Full:
                if self.stop.is_set():
                    raise Stopped from None

    def produce(self, ctx: DecodeContext) -> None:
        """Worker side: every event of the file, then the end (or the exception) to the queue."""
        try:
            for event in decode_events(self.path, self.size, ctx):
                self._put(event)
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

    def open(self, poll: Callable[[], None]) -> Header:
        return self._get(poll)

    def segments(self, poll: Callable[[], None]) -> Iterator[Segment]:
        while (value := self._get(poll)) is not _END:
            yield value
