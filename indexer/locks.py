"""The write lock: one writer per catalog, wherever the library folders that use it are.

- SQLite: an flock on a file beside the catalog (`write.lock` in the library folder for the
  default catalog, `CATALOG.lock` for one elsewhere). The kernel drops it when the holder exits,
  even by SIGKILL, and hands it to the next in line.
- PostgreSQL: a session-level advisory lock, held on a connection of its own for as long as the
  writer runs; the server drops it when that connection ends, also when the process is killed.
  Any machine that reaches the database is stopped by it.
- Other databases: a file lock in the library folder.

A second writer gets LibraryLockedError naming the holder, or with `wait` queues behind it.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import Engine, text

from retrieval.errors import AlreadyWatchingError, LibraryLockedError
from retrieval.paths import DB_FILE, LOCK_FILE, WATCH_LOCK_FILE

OnWait = Callable[[str], None]

# pg_advisory_lock(int4, int4): "xmr" and the lock's purpose, one per database.
_PG_KEY = (0x786D72, 1)


def lock_file(engine: Engine, folder: Path) -> Path:
    """Where the file lock of a catalog lives."""
    db = engine.url.database if engine.dialect.name == "sqlite" else None
    if not db or db == ":memory:":
        return folder / LOCK_FILE
    path = Path(db).resolve()
    if path == (folder / DB_FILE).resolve():
        return folder / LOCK_FILE
    return path.with_name(path.name + ".lock")


@contextmanager
def write_lock(engine: Engine, folder: Path, wait: bool = False, on_wait: OnWait | None = None) -> Iterator[None]:
    """Hold the catalog's write lock for the block (see the module doc)."""
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, wait, on_wait):
            yield
    else:
        with _file_lock(lock_file(engine, folder), str(folder), wait, on_wait):
            yield


@contextmanager
def watch_lock(folder: Path) -> Iterator[None]:
    """One watcher per library (`xmr index --watch`, `xmr serve --watch`): a second is refused."""
    with _file_lock(folder / WATCH_LOCK_FILE, str(folder), False, None, AlreadyWatchingError,
                    "already watching {where}; stop it first (one watcher indexes every change)"):
        yield


def watched(folder: Path) -> bool:
    """Is a watcher running on this library now? (Its lock is held.)"""
    try:
        fd = os.open(folder / WATCH_LOCK_FILE, os.O_RDWR)
    except OSError:
        return False
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except ImportError:  # pragma: no cover - not POSIX
        return False
    finally:
        os.close(fd)


@contextmanager
def _file_lock(path: Path, where: str, wait: bool, on_wait: OnWait | None,
               error: type[LibraryLockedError] = LibraryLockedError,
               doing: str = "writing to {where}; wait for it to finish") -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip()
            who = f"another xmr process{f' (pid {other})' if other else ''}"
            if not wait:
                raise error(f"{who} is {doing.format(where=where)}") from None
            if on_wait is not None:
                on_wait(f"waiting for {who} to finish writing to {where}")
            # The kernel queues us and hands the lock over when the holder exits, even by
            # SIGKILL; Ctrl-C still interrupts the wait.
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _pg_holder(conn: object) -> str:
    """Who holds the advisory lock, from the application name xmr gives its connections."""
    row = conn.execute(text(  # type: ignore[attr-defined]
        "SELECT a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :c AND l.objid = :o LIMIT 1"
    ), {"c": _PG_KEY[0], "o": _PG_KEY[1]}).first()
    if row is None:
        return "another xmr process"
    m = re.fullmatch(r"xmr pid (\d+) on (.+)", row[0] or "")
    if m:
        return f"another xmr process (pid {m.group(1)} on {m.group(2)})"
    return f"another process ({row[0] or row[1] or 'unnamed'})"


@contextmanager
def _advisory_lock(engine: Engine, wait: bool, on_wait: OnWait | None) -> Iterator[None]:
    where = engine.url.render_as_string(hide_password=True)
    conn = engine.connect()
    try:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        got = conn.execute(text("SELECT pg_try_advisory_lock(:c, :o)"), {"c": _PG_KEY[0], "o": _PG_KEY[1]}).scalar()
        if not got:
            who = _pg_holder(conn)
            if not wait:
                raise LibraryLockedError(f"{who} is writing to {where}; wait for it to finish")
            if on_wait is not None:
                on_wait(f"waiting for {who} to finish writing to {where}")
            conn.execute(text("SELECT pg_advisory_lock(:c, :o)"), {"c": _PG_KEY[0], "o": _PG_KEY[1]})
        yield
    finally:
        # The connection goes back to the pool, its session alive: release the lock explicitly
        # (or, if that fails, close the connection for real, which ends the session).
        try:
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
        except Exception:
            conn.invalidate()
        conn.close()
