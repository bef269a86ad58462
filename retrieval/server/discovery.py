"""The discovery file: how `xmr search` finds a server already running for its library.

`xmr serve` writes `server.json` into the library (like Jupyter's runtime files: host, port,
pid, and the token when it has one, so the file is private to the user) and removes it on
exit. A file left by a killed server is recognised as stale: its pid is gone, or nothing
answers, or what answers serves another library. Standard library only: the CLI imports this
before deciding whether it needs torch at all.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from retrieval.paths import SERVER_FILE


def discovery_path(library: Path) -> Path:
    return Path(library) / SERVER_FILE


def connect_host(bound: str) -> str:
    """Where a local client reaches a server bound to `bound` (a wildcard means loopback)."""
    if bound in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bound in ("::", "[::]"):
        return "::1"
    return bound


def base_url(host: str, port: int) -> str:
    host = connect_host(host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def write(library: Path, *, host: str, port: int, db: str | None, token: str | None) -> Path:
    """Announce this process as the server of `library` (atomically, mode 0600)."""
    info = {
        "pid": os.getpid(),
        "host": host,
        "port": port,
        "url": base_url(host, port),
        "library": str(Path(library).resolve()),
        "db": db,
        "token": token,
        "started": time.time(),
    }
    path = discovery_path(library)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)
    return path


def remove(library: Path) -> None:
    """Withdraw the announcement, if it is still this process's."""
    path = discovery_path(library)
    info = read(library)
    if info is not None and info.get("pid") == os.getpid():
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def read(library: Path) -> dict[str, Any] | None:
    try:
        with open(discovery_path(library)) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and {"pid", "url", "library"} <= info.keys() else None


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def find(library: Path, db: str | None = None) -> dict[str, Any] | None:
    """The announcement of a live server for this library and catalog (`db`: the --db URL,
    None for the library's own SQLite file), or None."""
    info = read(library)
    if info is None or not _alive(info.get("pid")):
        return None
    if info.get("library") != str(Path(library).resolve()):
        return None  # the library folder was copied or moved with the file in it
    if info.get("db") != db:
        return None
    return info
