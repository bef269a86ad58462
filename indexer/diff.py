"""What an index run has to do: the scanned folders against the catalog.

Unchanged files (same mtime and size) are left alone; a file that moved (same size and partial
hash as one gone from its old path) keeps its rows and vectors under the new path; files gone
from under a root are removed; everything else is decoded and encoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from indexer.catalog import File, Root
from indexer.facts import FACTS_VERSION
from indexer.scan import MediaFile, partial_hash, under
from retrieval.errors import UsageError


@dataclass
class Plan:
    jobs: list[MediaFile] = field(default_factory=list)  # to decode and encode
    known: dict[str, File] = field(default_factory=dict)  # catalog rows under the roots, by path
    gone: list[File] = field(default_factory=list)  # to remove
    moved: int = 0
    unchanged: int = 0
    stale_facts: list[File] = field(default_factory=list)  # unchanged, but facts not (yet) read this way


def recorded_roots(session: Session) -> list[str]:
    """Every root indexed before (what `xmr index` with no paths refreshes), in order."""
    return list(session.scalars(select(Root.path).order_by(Root.path)))


def roots_to_index(session: Session, paths: Sequence[str]) -> list[str]:
    """Absolute roots for `paths` (recorded for later runs), or every root indexed before."""
    if not paths:
        roots = recorded_roots(session)
        if not roots:
            raise UsageError("no folders to index: give one or more paths")
        return roots
    roots: list[str] = []
    known = set(session.scalars(select(Root.path)))
    for p in paths:
        root = os.path.abspath(os.path.expanduser(p))
        if root not in roots:
            roots.append(root)
        if root not in known and os.path.exists(root):
            session.add(Root(path=root, mount=os.path.ismount(root)))
            known.add(root)
    return roots


def present_roots(session: Session, roots: Sequence[str]) -> list[str]:
    """The roots that are there: a missing one, or a mount point with nothing mounted on it (an
    unmounted drive's empty folder), is left alone, its items kept, not emptied."""
    mounts = set(session.scalars(select(Root.path).where(Root.mount.is_(True))))
    return [r for r in roots if os.path.exists(r) and (r not in mounts or os.path.ismount(r))]


_AFTER_SEP = chr(ord(os.sep) + 1)


def _catalogunder(session: Session, paths: Sequence[str]) -> Iterator[File]:
    """The catalog's files at or under `paths`, found through the path's index (not every row):
    on SQLite, whose text compares bytewise, as the range between "P/" and "P0" ("0" follows "/");
    elsewhere (a collation may not be bytewise) by LIKE. In chunks: a burst names thousands."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    for i in range(0, len(paths), 200):
        clauses = []
        for p in (p.rstrip(os.sep) for p in paths[i:i + 200]):
            if sqlite:
                clauses.append(or_(File.path == p, and_(File.path > p + os.sep, File.path < p + _AFTER_SEP)))
            else:
                like = p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + os.sep + "%"
                clauses.append(or_(File.path == p, File.path.like(like, escape="\\")))
        yield from session.scalars(select(File).where(or_(*clauses)))


def plan(session: Session, present: Sequence[str], scanned_files: Iterable[MediaFile],
         scope: Sequence[str] | None = None) -> Plan:
    """Compare the scan with the catalog under the roots that are there (`present_roots`); moves
    are applied to the rows at once (not committed). `scope`: only these paths under the roots
    changed (a watcher's), so only catalog files at or under them are compared; one of them that
    no longer exists is gone with what it held."""
    scanned = {mf.path: mf for mf in scanned_files if under(mf.path, present)}
    if scope is None:
        rows = (f for f in session.scalars(select(File)) if under(f.path, present))
    else:
        live = [p for p in scope if under(p, present)]
        rows = (f for f in _catalogunder(session, live) if under(f.path, live))
    out = Plan(known={f.path: f for f in rows})
    gone = {p: f for p, f in out.known.items() if p not in scanned}
    by_size: dict[int, list[File]] = {}
    for f in gone.values():
        by_size.setdefault(f.size, []).append(f)
    for path, mf in scanned.items():
        old = out.known.get(path)
        if old is not None:
            if (old.size, old.mtime_ns) == (mf.size, mf.mtime_ns):
                out.unchanged += 1
                if (old.facts_version or 0) < FACTS_VERSION:
                    out.stale_facts.append(old)
            else:
                out.jobs.append(mf)
            continue
        match = None
        if by_size.get(mf.size):
            try:
                ph = partial_hash(path, mf.size)
            except OSError:
                ph = None
            match = next((f for f in by_size[mf.size] if f.phash == ph), None)
        if match is not None:  # the same content at a new path: keep its vectors
            by_size[mf.size].remove(match)
            del gone[match.path]
            match.path, match.mtime_ns = path, mf.mtime_ns
            out.moved += 1
        else:
            out.jobs.append(mf)
    out.gone = list(gone.values())
    return out
