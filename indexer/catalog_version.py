"""A token in the catalog's meta that changes with every committed change to files or items,
so the counts `xmr stats` reads from them (indexer.stats) can be kept and known to be current.

Registered on every SQLAlchemy session: a flush or an ORM statement that writes those tables
marks the session, and its commit writes a new token in the same transaction (a rolled-back
session writes none). Writes that bypass sessions (raw connections) leave the token as it was:
the kept counts then no longer match what a full count would say, so only session writes are
allowed on these tables (tests/test_stats_cache.py checks the library's own writers).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from indexer.catalog import get_meta, set_meta
from indexer.stats import CACHE_KEY, SCHEMA_VERSION, VERSION_KEY, counted

WATCHED = frozenset({"files", "items"})
_CHANGED = "xmr_catalog_changed"


def _flushed(session: Session, _context: Any) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        if getattr(obj, "__tablename__", None) in WATCHED:
            session.info[_CHANGED] = True
            return


def _executed(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in WATCHED:
            state.session.info[_CHANGED] = True


def _committing(session: Session) -> None:
    _flushed(session, None)  # what commit's own flush (after this event) will write
    if session.info.pop(_CHANGED, False):
        set_meta(session, VERSION_KEY, uuid.uuid4().hex)


def _ended(session: Session, *_: Any) -> None:
    session.info.pop(_CHANGED, None)  # commit's own flush marked it again: not the next one's


event.listen(Session, "after_flush", _flushed)
event.listen(Session, "do_orm_execute", _executed)
event.listen(Session, "before_commit", _committing)
event.listen(Session, "after_commit", _ended)
event.listen(Session, "after_rollback", _ended)


RECOUNT_SHARE = 60  # a slow count (> 1 s) is made again at most once per 60 times its length


def refresh(session: Session, force: bool = False) -> bool:
    """Count files and items again and keep the counts with the current token, unless the kept
    ones are current already, or (unless `force`) counting is slow and was done a moment ago: a
    watcher indexing a few files at a time into 10M would otherwise count for 8 s after each
    batch; `xmr stats` counts for itself until the next keeping. Commits. Returns whether it counted."""
    kept = get_meta(session, CACHE_KEY) or {}
    version = get_meta(session, VERSION_KEY)
    if version is not None and kept.get("version") == version and kept.get("schema") == SCHEMA_VERSION:
        return False
    took = float(kept.get("seconds") or 0.0)
    if not force and took > 1.0 and time.time() - float(kept.get("at") or 0.0) < RECOUNT_SHARE * took:
        return False
    if version is None:  # a catalog older than the token: give it one
        version = uuid.uuid4().hex
        set_meta(session, VERSION_KEY, version)
    conn = session.connection()
    t0 = time.perf_counter()
    counts = counted(lambda sql: list(conn.exec_driver_sql(sql).fetchall()))
    set_meta(session, CACHE_KEY, {"version": version, "schema": SCHEMA_VERSION, "counts": counts,
                                  "seconds": round(time.perf_counter() - t0, 3), "at": time.time()})
    session.info.pop(_CHANGED, None)  # counting changed nothing
    session.commit()
    return True
