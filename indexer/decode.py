"""Path -> segments through its kind, every failure a DecodeError(reason); the partial hash
that recognises a moved file. The pipeline prints "skipping PATH: reason" and goes on."""

from __future__ import annotations

import hashlib
from typing import Callable

from indexer.kinds import MediaKind, Segment
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


def decode_file(kind: MediaKind, path: str, ctx: DecodeContext, prepare: Prepare) -> list[Segment]:
    """The file's segments with prepared payloads (`prepare(segment)` turns what the kind
    decoded into model input, one segment at a time so a long file never sits in memory whole).
    Any failure is a DecodeError: one strange file must never stop a run."""
    try:
        return [prepare(seg) for seg in kind.decode(path, ctx)]
    except DecodeError:
        raise
    except (FileNotFoundError, PermissionError) as e:
        raise read_failure(e) from None
    except Exception as e:
        raise DecodeError(f"{type(e).__name__}: {e}") from None

