"""Grouping faces into people at scale: synthetic descriptors shaped like dlib's at unit length
(people ~0.65 apart, photos of one person ~0.25 apart, Euclidean), grouped by indexer.people.group, scored
by pairwise precision and recall against the truth; and new faces joined by indexer.people.assign.

    python scripts/bench_people.py [--faces 100000] [--per-person 20] [--seed 0]

Prints JSON: group_s, assign_s (10 % of the faces joined to the rest), people found vs true,
pairwise precision/recall. On real photos, tests/test_faces.py scores the same code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from indexer.people import assign, group  # noqa: E402


def synthetic_faces(people: int, per_person: int, seed: int = 0, apart: float = 0.9,
                    within: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors (n, 128) float32 at unit length, true person of each): as dlib's raw ones,
    centres `apart` from each other and faces `within`, around a common direction that makes
    their length ~1.39 (a fixed seed: the same for every `seed`), then scaled to unit length."""
    rng, common = np.random.default_rng(seed), np.random.default_rng(12345)
    d = 128
    base = common.normal(0, 1, d)
    base *= 1.21 / np.linalg.norm(base)
    centres = rng.normal(0, apart / np.sqrt(2 * d), (people, d))
    truth = np.repeat(np.arange(people), per_person)
    faces = base + centres[truth] + rng.normal(0, within / np.sqrt(2 * d), (len(truth), d))
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    order = rng.permutation(len(truth))
    return faces[order].astype(np.float32), truth[order]


def pairwise(labels: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Precision and recall over pairs of faces put together (by counts, not by listing pairs)."""
    def pairs(counts: Counter) -> int:
        return sum(c * (c - 1) // 2 for c in counts.values())

    both = pairs(Counter(zip(labels.tolist(), truth.tolist())))
    return both / max(1, pairs(Counter(labels.tolist()))), both / max(1, pairs(Counter(truth.tolist())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--per-person", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    x, truth = synthetic_faces(a.faces // a.per_person, a.per_person, a.seed)
    t = time.perf_counter()
    labels = np.asarray(group(x))
    group_s = time.perf_counter() - t
    precision, recall = pairwise(labels, truth)
    split = len(x) // 10
    t = time.perf_counter()
    joined = assign(x[:split], x[split:], labels[split:].tolist())
    assign_s = time.perf_counter() - t
    right = sum(j == lab for j, lab in zip(joined, labels[:split].tolist()))
    print(json.dumps({
        "faces": len(x), "true_people": int(truth.max() + 1), "people_found": int(labels.max() + 1),
        "group_s": round(group_s, 2), "pairwise_precision": round(precision, 4), "pairwise_recall": round(recall, 4),
        "assigned": split, "assign_s": round(assign_s, 2), "assigned_as_grouped": round(right / split, 4),
    }, indent=2))


if __name__ == "__main__":
    main()
