"""Typed exceptions. The library raises these; only the CLI turns them into exit codes."""

from __future__ import annotations


class XmrError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class UsageError(XmrError):
    """The request itself is malformed (bad query, bad option value)."""


class ModelLoadError(XmrError):
    """The encoder or its weights could not be loaded."""


class EncoderMismatchError(XmrError):
    """A library was opened with an encoder other than the one that made its vectors."""


class LibraryError(XmrError):
    """The library directory or its catalog cannot be used."""


class LibraryLockedError(LibraryError):
    """Another process is writing to the library."""


class AlreadyWatchingError(LibraryLockedError):
    """Another process watches this library already (one watcher per library)."""


class SchemaVersionError(LibraryError):
    """The catalog was written by a newer xmr."""


class FaissMissingError(XmrError):
    """Neither faiss-cpu nor faiss-gpu is installed."""


class NotFoundError(XmrError):
    """An item (or other named thing) that is not in the library."""


class DecodeError(XmrError):
    """A media file could not be read; the message is the reason shown after 'skipping PATH:'."""


class ClusterError(XmrError):
    """The Ray cluster could not be reached, or failed under a run (indexer.cluster)."""


class DiskFullError(LibraryError):
    """A library file could not be written for want of room (a full disk, a quota, a file size
    limit); what was written of it is not part of the library."""


def cannot_write(path: object, error: BaseException) -> LibraryError:
    """The error for a failed write of a library file: DiskFullError when it was room that
    lacked (errno, or faiss's message ending in the system's reason), else LibraryError."""
    import errno
    import os
    import re
    import shutil

    text = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    ends = re.search(r"\(([^()]+)\)$", text)  # faiss: "... write error in F: 104 != 320 (No space left on device)"
    reason = getattr(error, "strerror", None) or (ends.group(1) if ends else text)
    room = {os.strerror(e) for e in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)}
    if reason not in room:
        return LibraryError(f"cannot write {path}: {reason}")
    try:
        free = f"{shutil.disk_usage(os.path.dirname(str(path)) or '.').free / 2**20:,.0f} MiB free there"
    except OSError:
        free = "free space unknown"
    return DiskFullError(f"cannot write {path}: {reason} ({free}); the library is as it was before this run: "
                         "make room and run the command again")
