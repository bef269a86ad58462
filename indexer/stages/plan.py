"""PLAN: the roots scanned and diffed against the catalog (indexer.diff): what to decode, what
moved, what is gone; and the facts of unchanged files read again where xmr now reads more."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from sqlalchemy.orm import Session

from indexer.diff import Plan, plan, present_roots, roots_to_index
from indexer.facts import FACT_FIELDS, FACTS_VERSION
from indexer.kinds import get_kind, is_candidate
from indexer.scan import ignored_under, scan, under
from indexer.stages.decode import safe_facts

OnSkip = Callable[[str, str], None]


def plan_run(session: Session, paths: Sequence[str], skip: OnSkip, skip_dirs: Sequence[str], workers: int,
             scope: Sequence[str] = ()) -> Plan:
    """What this run has to do for `paths` (or every root indexed before); with `scope`, only for
    those paths under them (what a watcher saw change). Moves are applied to the rows at once
    (uncommitted); the caller removes `gone`."""
    roots = roots_to_index(session, paths)
    present = present_roots(session, roots)
    for root in set(roots) - set(present):
        if os.path.exists(root):  # a missing one is told by the scan
            skip(root, "nothing is mounted there now; its items are kept until it is back")
    if not scope:
        todo = plan(session, present, scan(roots, skip, skip_dirs=skip_dirs))
    else:
        todo = plan(session, present, scan(_scope_files(scope, roots), skip, skip_dirs=skip_dirs), scope)
    refresh_facts(session, todo.stale_facts, workers)
    return todo


def _scope_files(scope: Sequence[str], roots: Sequence[str]) -> list[str]:
    """The changed paths worth scanning: those that still exist under a root (one that vanished
    since is gone, quietly), none hidden or temporary, files only of a kind xmr reads."""
    out = []
    for path in scope:
        root = next((r for r in roots if under(path, [r])), None)
        if root is None or not os.path.exists(path) or ignored_under(path, root):
            continue
        if os.path.isdir(path) or is_candidate(os.path.basename(path)):
            out.append(path)
    return out


def refresh_facts(session: Session, files: list[Any], workers: int) -> None:
    """Read the facts of catalog files indexed before facts were read (or read differently),
    without decoding or embedding them again: a library from an older xmr gains dates,
    cameras and places on its next `xmr index`."""
    if not files:
        return

    def read(f: Any) -> dict[str, Any]:
        try:
            kind = get_kind(f.modality)
        except KeyError:
            return {}
        return safe_facts(kind, f.path)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="xmr-facts") as pool:
        for f, facts in zip(files, pool.map(read, files)):
            for name in FACT_FIELDS:
                setattr(f, name, facts.get(name, getattr(f, name) if name == "duration" else None))
            f.facts_version = FACTS_VERSION
