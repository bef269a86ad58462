"""PLAN: the roots scanned and diffed against the catalog (indexer.diff): what to decode, what
moved, what is gone; and the facts of unchanged files read again where xmr now reads more."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from sqlalchemy.orm import Session

from indexer.diff import Plan, plan, roots_to_index
from indexer.facts import FACT_FIELDS, FACTS_VERSION
from indexer.kinds import get_kind
from indexer.scan import scan
from indexer.stages.decode import safe_facts

OnSkip = Callable[[str, str], None]


def plan_run(session: Session, paths: Sequence[str], skip: OnSkip, skip_dirs: Sequence[str], workers: int) -> Plan:
    """What this run has to do for `paths` (or every root indexed before). Moves are applied to
    the rows at once (uncommitted); the caller removes `gone`."""
    roots = roots_to_index(session, paths)
    todo = plan(session, roots, scan(roots, skip, skip_dirs=skip_dirs))
    refresh_facts(session, todo.stale_facts, workers)
    return todo


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
