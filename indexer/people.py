"""Faces into people: a first grouping by chinese whispers (dlib's) over the graph of faces closer
than the threshold (each face's nearest neighbours found by FAISS, so 100,000 faces do not cost
10^10 comparisons), and new faces joined one by one to the person most of their close
neighbours belong to. Pairs of people the user keeps apart are never joined by either.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Collection

from indexer.faces import SAME_PERSON

if TYPE_CHECKING:
    import numpy as np

NEIGHBOURS = 16  # the graph's edges per face, and the votes a new face counts
EXACT_UP_TO = 20_000  # faces searched exactly below this; an IVF index above (recall ~0.99 at this nprobe)


def _knn(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Squared Euclidean distances and positions of each query's k nearest faces in `base`."""
    import faiss
    import numpy as np

    base = np.ascontiguousarray(base, dtype=np.float32)
    d = base.shape[1]
    if len(base) <= EXACT_UP_TO:
        index = faiss.IndexFlatL2(d)
    else:
        lists = int(4 * np.sqrt(len(base)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, lists)
        rng = np.random.default_rng(0)
        index.train(base[rng.choice(len(base), min(len(base), 64 * lists), replace=False)])
        index.nprobe = 16
    index.add(base)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(base)))


def group(descriptors: np.ndarray, threshold: float = SAME_PERSON, k: int = NEIGHBOURS) -> list[int]:
    """A label per face (0..n_people-1): faces linked by a distance under `threshold` to one of
    their k nearest, then split into people by chinese whispers (seeded: the same answer each time)."""
    import dlib

    n = len(descriptors)
    if n == 0:
        return []
    dist, pos = _knn(descriptors, descriptors, k + 1)
    limit = threshold * threshold
    edges = [(i, i) for i in range(n)]  # every face is a vertex, also one with no close neighbour
    for i in range(n):
        edges += [(i, int(j)) for d, j in zip(dist[i], pos[i]) if 0 <= j != i and d < limit]
    labels = dlib.chinese_whispers(edges)
    order: dict[int, int] = {}  # labels renumbered by first appearance
    return [order.setdefault(label, len(order)) for label in labels]


def assign(new: np.ndarray, known: np.ndarray, person_of: list[int], threshold: float = SAME_PERSON,
           refused: Collection[tuple[int, int]] = (), k: int = NEIGHBOURS) -> list[int | None]:
    """The person each new face joins: the one most of its known neighbours under `threshold`
    belong to (ties: the nearest), or None (a stranger, grouped with the other strangers later).
    `refused`: (face index in `new`, person) pairs the user has undone: never proposed again."""
    if len(known) == 0:
        return [None] * len(new)
    dist, pos = _knn(known, new, k)
    limit, no = threshold * threshold, set(refused)
    out: list[int | None] = []
    for i in range(len(new)):
        close = [(d, person_of[j]) for d, j in zip(dist[i], pos[i]) if 0 <= j and d < limit and (i, person_of[j]) not in no]
        if not close:
            out.append(None)
            continue
        votes = Counter(p for _, p in close)
        best = max(votes.values())
        out.append(min((d, p) for d, p in close if votes[p] == best)[1])
    return out
