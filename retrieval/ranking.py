"""Ranked candidates from the full-text side, their fusion with the vector side, and where a
list is cut: the steps between a query and its hits that need no rows yet."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer import words
from indexer.catalog import Item, chunked
from retrieval.calibration import Calibrator
from retrieval.cutoff import AUTO, auto_edge
from retrieval.hybrid import BELOW_MEANT, LIFT_COMMON, LIFT_RARE, SOME_WORDS, depth
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


def standing(s: Session, calibrator: Calibrator, vecs: Any, vector: np.ndarray,
             cands: list[Cand]) -> tuple[dict[int, float], dict[int, tuple[str, str]]]:
    """Each candidate's cosine as standard deviations above the query's usual cosine in its kind
    (retrieval.calibration), and each one's channel."""
    channel: dict[int, tuple[str, str]] = {}
    for part in chunked([c.item_id for c in cands]):
        for i, m, e in s.execute(select(Item.id, Item.modality, Item.embedder).where(Item.id.in_(part))):
            channel[i] = (m, e or m)
    groups: dict[tuple[str, str], list[Cand]] = {}
    for c in cands:
        if c.item_id in channel:
            groups.setdefault(channel[c.item_id], []).append(c)
    z = calibrator.calibrate(s, vecs, vector, {ch: [c.cosine or 0.0 for c in g] for ch, g in groups.items()})
    return {c.item_id: value for ch, g in groups.items() for c, value in zip(g, z[ch])}, channel


def every_word_lift(s: Session, wq: words.WordQuery, n_items: int) -> float:
    """How far holding every word of the query lifts an item (standard deviations): LIFT_COMMON,
    plus up to LIFT_RARE the rarer the query's commonest word is in the library (a name, a rare
    term: log(N / df) / log(N), as inverse document frequency)."""
    if n_items < 2:
        return LIFT_COMMON
    df = max(1, words.held_by(s, wq))
    rarity = min(1.0, max(0.0, math.log(n_items / df) / math.log(n_items)))
    return LIFT_COMMON + LIFT_RARE * rarity


def fuse(s: Session, calibrator: Calibrator, vecs: Any, semantic: list[Cand], wq: words.WordQuery,
         vector: np.ndarray, n: int, where: tuple[str | None, np.ndarray | None]) -> tuple[list[Cand], set[int]]:
    """Meaning and words in one ranking (retrieval.hybrid): each candidate's standing by meaning,
    lifted where its words hold the query's words; with phrases, only items that hold them. Also
    the ids holding every word. `where`: (one kind or None, the allowed ids or None)."""
    modality, allowed = where
    # a phrase filters: look deep enough that the items holding it are all known
    deep = max(depth(n), 1000) if wq.phrases else depth(n)
    every = _words(s, wq, deep, modality, allowed, True)
    relevance = dict(_words(s, wq, deep, modality, allowed, False))
    relevance.update(every)
    if wq.phrases:
        semantic = [c for c in semantic if c.item_id in relevance]
    known = {c.item_id for c in semantic}
    cosine = similarity(vecs, vector, [i for i in relevance if i not in known])
    cands = semantic + [Cand(i, value, cosine=value) for i, value in cosine.items()]
    z, channel = standing(s, calibrator, vecs, vector, cands)
    out = [c for c in cands if c.item_id in z]
    for c in out:
        c.calibrated, c.words = z[c.item_id], relevance.get(c.item_id)
    held = {i for i, _ in every}
    lift = every_word_lift(s, wq, vecs.ntotal if vecs is not None else 0) if relevance else 0.0
    _lift(out, held, lift, meant_from(out, channel))
    if wq.exact:  # a code, a number, a phrase: what holds it comes first, whatever the meaning says
        exact = words.exact_part(wq)
        _first(out, held if exact.empty else {i for i, _ in _words(s, exact, deep, modality, allowed, True)})
    out.sort(key=lambda c: (-c.score, c.item_id))
    return out[:n], held


def meant_from(cands: list[Cand], channel: dict[int, tuple[str, str]]) -> float:
    """The lowest standing among what the query means: the candidates before their kind's
    `--cutoff auto` edge (retrieval.cutoff); inf when nothing stands out by meaning."""
    by_channel: dict[tuple[str, str], list[float]] = {}
    for c in cands:
        by_channel.setdefault(channel[c.item_id], []).append(c.calibrated or 0.0)
    edges = [auto_edge(values) for values in by_channel.values()]
    return min(edges, default=float("inf"))


def _lift(cands: list[Cand], held: set[int], lift: float, meant: float) -> None:
    """Each candidate's score: its standing by meaning, lifted by its words. An item holding every
    word is lifted by `lift` (in proportion to how well its words match: BM25 relative to the
    best match's, so a passage mentioning them in passing is lifted less). One holding only some
    of the words is lifted by SOME_WORDS of that, but never to what the query means (`meant`):
    where meaning finds nothing, a transcript that misheard one word of the query is still found
    by the words it got right."""
    best = max((c.words for c in cands if c.words is not None), default=0.0)
    for c in cands:
        z = c.calibrated or 0.0
        share = max(0.0, c.words) / best if c.words is not None and best > 0 else 0.0
        if c.item_id in held:
            c.score = z + lift * share
        elif c.words is not None and z < meant:  # some of the words, and not itself meant
            c.score = max(z, min(z + lift * share * SOME_WORDS, meant - BELOW_MEANT))
        else:
            c.score = z


def _first(cands: list[Cand], tier: set[int]) -> None:
    """The candidates in `tier` (holding the query's codes, numbers and phrases) above all others,
    in their order."""
    inside = [c for c in cands if c.item_id in tier]
    if not inside:
        return
    others = max((c.score for c in cands if c.item_id not in tier), default=0.0)
    lowest = min(c.score for c in inside)
    for c in inside:
        c.score += max(0.0, others - lowest + LIFT_COMMON)


def apply_cutoff(s: Session, calibrator: Calibrator, vecs: Any, vector: np.ndarray | None, cands: list[Cand],
                 cut: str | float, every: set[int]) -> list[Cand]:
    """The candidates above a minimum cosine, or ('auto') those before the largest drop of their
    kind's calibrated curve (retrieval.cutoff); items holding every word of the query pass `auto`
    too. Order kept."""
    if cut != AUTO:
        return [c for c in cands if c.cosine is not None and c.cosine >= float(cut)]
    if vector is None or vecs is None:  # words only: the items holding every word
        return [c for c in cands if c.item_id in every]
    z, channel = standing(s, calibrator, vecs, vector, cands)
    by_channel: dict[tuple[str, str], list[float]] = {}
    for c in cands:
        if c.item_id in z:
            by_channel.setdefault(channel[c.item_id], []).append(z[c.item_id])
    # each kind's curve has its own edge: a query's notes and its pictures stand out apart
    edges = {ch: auto_edge(values) for ch, values in by_channel.items()}
    out = []
    for c in cands:
        value = z.get(c.item_id)
        if value is None:
            continue
        if c.calibrated is None:
            c.calibrated = value
        if value >= edges[channel[c.item_id]] or c.item_id in every:
            out.append(c)
    return out
