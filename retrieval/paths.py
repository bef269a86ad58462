"""Where a library lives and what its files are called (no heavy imports: the CLI's fast paths use it)."""

from __future__ import annotations

from pathlib import Path

INDEX_FILE = "vectors.faiss"
DB_FILE = "catalog.db"
LOCK_FILE = "write.lock"
BRIDGE_FILE = "bridge.safetensors"
SERVER_FILE = "server.json"  # a running `xmr serve` for this library: host, port, pid
THUMBNAIL_DIR = "thumbnails"


def default_library_dir() -> Path:
    """The per-user data dir (e.g. ~/.local/share/xmr/library on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("xmr", appauthor=False)) / "library"
