"""One catalog belongs to one library folder, and a folder's files to one catalog.

The index and bridge files live in the folder; the catalog names the current ones, and its
writers delete files it does not name. Two folders sharing a catalog (`--db` pointed at the same
database), or one folder switching catalogs, would delete each other's files and rows. So the
first writer gives the catalog an id (`library_id` in its meta, with the folder's path) and
writes the same id into the folder (`library-id`); opening a catalog from a folder that does not
hold its id is refused before anything is changed.

A failed first command (a usage error, weights that cannot be loaded, Ctrl-C before the first
commit) leaves no library behind: `discard` removes what opening it created.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from indexer.catalog import Base, get_meta, set_meta
from retrieval.errors import LibraryError
from retrieval.paths import DB_FILE, ID_FILE, LOCK_FILE


def folder_id(folder: Path) -> str | None:
    try:
        return (folder / ID_FILE).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def is_default_catalog(engine: Engine, folder: Path) -> bool:
    """The SQLite catalog inside the folder: it moves with the folder and cannot be shared."""
    db = engine.url.database if engine.dialect.name == "sqlite" else None
    return bool(db) and Path(str(db)).resolve() == (folder / DB_FILE).resolve()


def check_owner(session: Session, engine: Engine, folder: Path) -> None:
    """Refuse a catalog that belongs to another folder, or a folder whose files belong to
    another catalog (LibraryError; nothing is changed)."""
    cat_id, dir_id = get_meta(session, "library_id"), folder_id(folder)
    where = engine.url.render_as_string(hide_password=True)
    if cat_id is not None and cat_id != dir_id:
        owner = get_meta(session, "library_path") or "another folder"
        raise LibraryError(
            f"the catalog {where} belongs to the library at {owner}, not {folder}; use --library {owner} "
            "with it, or give this library a catalog of its own (another --db)")
    if cat_id is None and dir_id is not None and not is_default_catalog(engine, folder):
        raise LibraryError(
            f"{folder} holds the files of another catalog (library id {dir_id}); use that catalog's --db "
            f"with it, or another --library for {where}")


def claim(session: Session, folder: Path) -> None:
    """Under the write lock: give a catalog without an id this folder's (a new one), and keep the
    recorded path current when the folder moved. The caller commits."""
    cat_id = get_meta(session, "library_id")
    if cat_id is None:
        cat_id = folder_id(folder) or uuid.uuid4().hex  # a default catalog made anew keeps its folder's id
        tmp = folder / f".{ID_FILE}.{os.getpid()}.tmp"
        tmp.write_text(cat_id + "\n", encoding="ascii")
        os.replace(tmp, folder / ID_FILE)
        set_meta(session, "library_id", cat_id)
    path = str(folder.resolve())
    if get_meta(session, "library_path") != path:
        set_meta(session, "library_path", path)


def discard(engine: Engine, folder: Path, *, created_folder: bool) -> None:
    """Remove a library that a failed first command created: its tables (the SQLite catalog
    file), lock and id files, and the folder if it made it and nothing else is in it."""
    sqlite_db = engine.url.database if engine.dialect.name == "sqlite" else None
    if sqlite_db:
        engine.dispose()
        db = Path(str(sqlite_db))
        for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), db.with_name(db.name + ".lock")):
            p.unlink(missing_ok=True)
    else:
        from indexer import words

        with engine.begin() as conn:
            words.drop(conn)  # not one of Base's tables, and it refers to items
        Base.metadata.drop_all(engine)
        engine.dispose()
    for name in (LOCK_FILE, ID_FILE):
        (folder / name).unlink(missing_ok=True)
    if created_folder:
        try:
            folder.rmdir()
        except OSError:  # not empty: something else is in it now
            pass
