"""How well `--cutoff auto` stops where relevance stops, against a fixed top-k of the same mean size.

The labelled sets (built here, seeded): photo worlds of scripts/photo_world.py, pictures of the
demo model's 24 concepts (6 colours x 4 shapes) in classes of 2 to 30 members, plus planted
copies (members of their original's class); then the same with caption notes beside them (1 to
6 a concept), so that one list mixes kinds (each calibrated on its own). Queries: each concept
("a red circle"); relevant: its pictures (and notes).
For each query `--cutoff auto` returns a set; a fixed top-k with k = the mean size of those sets
(over the query set) is the baseline. Printed: precision and recall of each, micro-averaged
(pooled over queries) and macro (per query, then averaged), as JSON.

    python -m scripts.eval_cutoff [--models local-dir:A local-dir:B ...] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from scripts.photo_world import make_world


def _queries(manifest: dict[str, Any]) -> dict[str, set[str]]:
    """{query: relevant relative paths}."""
    concept = {rel: p["concept"] for rel, p in manifest["pictures"].items()}
    concept.update({copy: concept[orig] for copy, orig in manifest["copies"].items()})
    concept.update(manifest.get("notes") or {})
    by_concept: dict[str, set[str]] = {}
    for rel, c in concept.items():
        by_concept.setdefault(c, set()).add(rel)
    return {f"a {c}": members for c, members in by_concept.items()}


def _score(found: list[set[str]], relevant: list[set[str]]) -> dict[str, float]:
    tp = sum(len(f & r) for f, r in zip(found, relevant))
    n_found, n_rel = sum(map(len, found)), sum(map(len, relevant))
    per_p = [len(f & r) / len(f) if f else 0.0 for f, r in zip(found, relevant)]
    per_r = [len(f & r) / len(r) for f, r in zip(found, relevant)]
    return {"precision": round(tp / max(n_found, 1), 3), "recall": round(tp / max(n_rel, 1), 3),
            "macro_precision": round(sum(per_p) / len(per_p), 3), "macro_recall": round(sum(per_r) / len(per_r), 3)}


def _best_cut(ranked: list[str], relevant: set[str], recall: float = 0.8) -> set[str]:
    """The prefix of `ranked` with the highest precision among those reaching `recall`."""
    best, best_p, hits = set(ranked), -1.0, 0
    for n, rel in enumerate(ranked, 1):
        hits += rel in relevant
        if hits / len(relevant) >= recall and hits / n > best_p:
            best, best_p = set(ranked[:n]), hits / n
    return best


def evaluate(model: str, seeds: list[int]) -> dict[str, Any]:
    from retrieval import Library

    pooled: dict[str, dict[str, list]] = {}
    for seed in seeds:
        for name, notes in (("pictures", False), ("pictures_and_notes", True)):
            with tempfile.TemporaryDirectory(prefix="xmr-eval-cutoff-") as tmp:
                media = Path(tmp) / "media"
                manifest = make_world(media, seed, notes=notes)
                lib = Library(Path(tmp) / "lib", model=model, create=True)
                lib.index([media])

                def rel(hits: list[Any]) -> list[str]:
                    return [str(Path(h.path).relative_to(media)) for h in hits]

                p = pooled.setdefault(name, {"relevant": [], "auto": [], "ranked": []})
                for q, relevant in _queries(manifest).items():
                    p["relevant"].append(relevant)
                    p["auto"].append(set(rel(lib.search(q, k=2000, mode="semantic", cutoff="auto"))))
                    p["ranked"].append(rel(lib.search(q, k=2000, mode="semantic")))
                lib.close()
    out: dict[str, Any] = {"seeds": seeds}
    for name, p in pooled.items():
        k = max(1, round(sum(map(len, p["auto"])) / len(p["auto"])))
        out[name] = {
            "queries": len(p["relevant"]),
            "class_sizes": [min(map(len, p["relevant"])), max(map(len, p["relevant"]))],
            "auto": {**_score(p["auto"], p["relevant"]), "mean_size": round(sum(map(len, p["auto"])) / len(p["auto"]), 1)},
            f"fixed_top_{k}": _score([set(r[:k]) for r in p["ranked"]], p["relevant"]),
            # the best any cutoff could do on this model's ranking: each query cut where its
            # precision is highest at recall >= 0.8 (an upper bound, which knows the answers)
            "best_cut_at_recall_0.8": _score([_best_cut(r, rel) for r, rel in zip(p["ranked"], p["relevant"])],
                                             p["relevant"]),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", help="default: the demo model (trained once, cached)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    from scripts.demo import model_or_demo

    models = args.models or [model_or_demo(None)]
    print(json.dumps([{"model": m, **evaluate(m, args.seeds)} for m in models], indent=2))


if __name__ == "__main__":
    main()
