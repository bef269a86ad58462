"""Where a library lives, what its files are called, how paths are printed (no heavy imports:
the CLI's fast paths use it)."""

from __future__ import annotations

from pathlib import Path

INDEX_FILE = "vectors.faiss"
DB_FILE = "catalog.db"
LOCK_FILE = "write.lock"
WATCH_LOCK_FILE = "watch.lock"  # held by the one watcher of a library (`xmr index --watch`)
WATCH_FILE = "watch.json"  # what that watcher is doing: pending changes, paused roots, last change
BRIDGE_FILE = "bridge.safetensors"
SERVER_FILE = "server.json"  # a running `xmr serve` for this library: host, port, pid
THUMBNAIL_DIR = "thumbnails"
ID_FILE = "library-id"  # which catalog this folder's files belong to (its `library_id`)


def default_library_dir() -> Path:
    """The per-user data dir (e.g. ~/.local/share/xmr/library on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("xmr", appauthor=False)) / "library"


def display_path(path: str) -> str:
    """The path as it can be printed on one line: control characters and undecodable bytes escaped."""
    if path.isprintable():
        return path
    escaped = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in escaped)
