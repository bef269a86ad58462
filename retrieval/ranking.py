"""Ranked candidates from the full-text side, their fusion with the vector side, and where a
list is cut: the steps between a query and its hits that need no rows yet."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer import words
from indexer.catalog import Item, chunked
from retrieval.calibration import Calibrator
from retrieval.cutoff import AUTO, auto_edge
from retrieval.hybrid import SOME_WEIGHT, depth, rrf
from retrieval.paging import Cand


def depth_for(wq: words.WordQuery | None, n: int) -> int:
    """How many nearest vectors a list of n needs: n, or each side's depth when fused."""
    return depth(n) if wq is not None else n


def _words(s: Session, wq: words.WordQuery, n: int, modality: str | None, allowed: np.ndarray | None,
           every: bool) -> list[tuple[int, float]]:
    """The full-text side's best n, among `allowed` (all matches are ranked, then kept to them)."""
    if allowed is None:
        return words.search(s, wq, n, modality, every=every)
    found = words.search(s, wq, words.MAX_LIMIT, modality, every=every)
    keep = np.isin(np.fromiter((i for i, _ in found), np.int64, len(found)), allowed)
    return [f for f, ok in zip(found, keep) if ok][:n]


def word_cands(s: Session, wq: words.WordQuery, n: int, modality: str | None,
               allowed: np.ndarray | None) -> tuple[list[Cand], set[int]]:
    """`words` mode: items holding every word first, then those holding some; `score` is their
    relevance there. Also the ids holding every word."""
    every = _words(s, wq, n, modality, allowed, True)
    held = {i for i, _ in every}
    found = every + [(i, r) for i, r in _words(s, wq, n, modality, allowed, False) if i not in held]
    return [Cand(i, r, words=r) for i, r in found[:n]], held


def similarity(vecs: Any, vector: np.ndarray, ids: list[int]) -> dict[int, float]:
    """Cosine of the query to stored vectors (items the full-text side alone found)."""
    if vecs is None or not ids:
        return {}
    held = vecs.present(np.asarray(sorted(ids), np.int64))
    stored = vecs.reconstruct_many(held)
    norms = np.maximum(np.linalg.norm(stored, axis=1), 1e-12)
    return {int(i): float(v) for i, v in zip(held, stored @ vector / norms)}


def fuse(s: Session, vecs: Any, semantic: list[Cand], wq: words.WordQuery, vector: np.ndarray, n: int,
         modality: str | None, allowed: np.ndarray | None) -> tuple[list[Cand], set[int]]:
    """The meaning and word rankings fused by RRF (retrieval.hybrid); with phrases, only items
    that hold them. Also the ids holding every word."""
    # a phrase filters: look deep enough that the items holding it are all known
    deep = max(depth(n), 1000) if wq.phrases else depth(n)
    every = _words(s, wq, deep, modality, allowed, True)
    relevance = dict(every)
    some: list[tuple[int, float]] = []
    if not every:  # nothing holds every word: the items holding some of them, at a lower weight
        some = _words(s, wq, deep, modality, allowed, False)
    relevance.update(some)
    if wq.phrases:
        semantic = [c for c in semantic if c.item_id in relevance]
    fused = rrf([([i for i, _ in every[: depth(n)]], 1.0), ([c.item_id for c in semantic], 1.0),
                 ([i for i, _ in some[: depth(n)]], SOME_WEIGHT)])[:n]
    by_id = {c.item_id: c for c in semantic}
    cosine = similarity(vecs, vector, [i for i, _ in fused if i not in by_id])
    out = []
    for item_id, f in fused:
        c = by_id.get(item_id) or Cand(item_id, cosine.get(item_id, 0.0))
        c.words, c.fused = relevance.get(item_id), f
        out.append(c)
    return out, {i for i, _ in every}


def apply_cutoff(s: Session, calibrator: Calibrator, vecs: Any, vector: np.ndarray | None, cands: list[Cand],
                 cut: str | float, every: set[int]) -> list[Cand]:
    """The candidates above a minimum cosine, or ('auto') those before the largest drop of their
    kind's calibrated curve (retrieval.cutoff); items holding every word of the query pass `auto`
    too. Order kept."""
    if cut != AUTO:
        return [c for c in cands if c.score >= float(cut)]
    if vector is None or vecs is None:  # words only: the items holding every word
        return [c for c in cands if c.item_id in every]
    channel: dict[int, tuple[str, str]] = {}
    for part in chunked([c.item_id for c in cands]):
        for i, m, e in s.execute(select(Item.id, Item.modality, Item.embedder).where(Item.id.in_(part))):
            channel[i] = (m, e or m)
    groups: dict[tuple[str, str], list[Cand]] = {}
    for c in cands:
        if c.item_id in channel:
            groups.setdefault(channel[c.item_id], []).append(c)
    z = calibrator.calibrate(s, vecs, vector, {ch: [c.score for c in g] for ch, g in groups.items()})
    standing = {c.item_id: value for ch, g in groups.items() for c, value in zip(g, z[ch])}
    # each kind's curve has its own edge: a query's notes and its pictures stand out apart
    edges = {ch: auto_edge(z[ch]) for ch in groups}
    out = []
    for c in cands:
        value = standing.get(c.item_id)
        if value is None:
            continue
        if c.calibrated is None:
            c.calibrated = value
        if value >= edges[channel[c.item_id]] or c.item_id in every:
            out.append(c)
    return out
