"""Walk folders and list the candidate media files in them (a known kind's extension, or none):
hidden entries skipped, symlink loops safe. Which kind a file is, its content decides later."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from indexer.kinds import is_candidate

OnSkip = Callable[[str, str], None]
_PARTIAL_BLOCK = 64 * 1024
# Files that are not (yet) what they will be: partial downloads, editors' swap and lock files.
_TEMP_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".swp", ".swx", "~")


def ignored_name(name: str) -> bool:
    """Hidden entries, Office's `~$` lock files, partial downloads and editors' temp files."""
    return name.startswith((".", "~$")) or name.lower().endswith(_TEMP_SUFFIXES)


def under(path: str, roots: Iterable[str]) -> bool:
    """Is `path` one of `roots` or inside one of them?"""
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def ignored_under(path: str, root: str) -> bool:
    """Does `path`, below `root`, pass through a hidden or temporary name (as a scan skips)?"""
    rel = os.path.relpath(path, root) if path != root else ""
    return any(ignored_name(part) for part in rel.split(os.sep) if part and part != ".")


@dataclass(frozen=True)
class MediaFile:
    path: str  # absolute, not symlink-resolved: the path the user sees
    size: int
    mtime_ns: int


def partial_hash(path: str, size: int) -> str:
    """Size + first and last 64 KiB: cheap, and enough to recognise a file that was moved."""
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(_PARTIAL_BLOCK))
        if size > 2 * _PARTIAL_BLOCK:
            f.seek(size - _PARTIAL_BLOCK)
            h.update(f.read(_PARTIAL_BLOCK))
    return h.hexdigest()


def _utf8_name(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes, kept by os as lone surrogates
        return False


def _stat_file(path: str, on_skip: OnSkip) -> MediaFile | None:
    if not _utf8_name(path):
        on_skip(path, "file name is not valid UTF-8; rename the file to index it")
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        on_skip(path, "broken symlink" if os.path.islink(path) else "file vanished")
        return None
    except OSError as e:
        on_skip(path, e.strerror or str(e))
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return MediaFile(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns)


def scan(roots: Iterable[str | Path], on_skip: OnSkip, skip_dirs: Iterable[str | Path] = ()) -> Iterator[MediaFile]:
    """Yield candidate media files under `roots` (files or folders), each once, sorted per folder,
    never entering `skip_dirs`."""
    seen_dirs: set[tuple[int, int]] = set()
    for d in skip_dirs:  # the library's own folder (thumbnails, catalog) is never media
        try:
            st = os.stat(d)
            seen_dirs.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    seen_files: set[str] = set()
    for root in roots:
        root = os.path.abspath(os.path.expanduser(str(root)))
        if os.path.isfile(root):
            mf = _stat_file(root, on_skip)
            if mf and root not in seen_files:
                seen_files.add(root)
                yield mf
            continue
        if not os.path.isdir(root):
            on_skip(root, "no such file or folder")
            continue

        def walk_error(e: OSError, root: str = root) -> None:
            on_skip(e.filename or root, e.strerror or str(e))

        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=walk_error):
            try:
                st = os.stat(dirpath)
            except OSError:
                dirnames[:] = []
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:  # symlink loop or a folder reached twice
                dirnames[:] = []
                continue
            seen_dirs.add(key)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if ignored_name(name) or not is_candidate(name):
                    continue
                path = os.path.join(dirpath, name)
                if path in seen_files:
                    continue
                seen_files.add(path)
                mf = _stat_file(path, on_skip)
                if mf:
                    yield mf
