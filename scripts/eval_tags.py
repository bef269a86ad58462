"""How well zero-shot tags hold on a model: precision and recall of `xmr tag` per label, on
labelled photo worlds (scripts/photo_world.py: the demo model's 24 colour x shape concepts in
classes of 2 to 30 pictures, plus planted copies), for one or more models.

Label sets: the six colours and the four shapes, each tagged as an exclusive group
(`--labels "red|green|..."`: a picture gets one colour, CLIP's zero-shot classification) and as
labels alone (`--labels "red,green,..."`: each a yes/no tag, competing within the set). A picture
is relevant to a label when its concept has that colour or shape. Printed as JSON: per model,
per set and form, pooled (micro) and the worst label's precision and recall.

    python -m scripts.eval_tags [--models local-dir:A local-dir:B ...] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from scripts.photo_world import make_world
from scripts.synthetic import COLORS, SHAPES

SETS = {"colours": "|".join(COLORS), "shapes": "|".join(SHAPES)}


def _relevant(manifest: dict[str, Any], label: str) -> set[str]:
    concept = {rel: p["concept"] for rel, p in manifest["pictures"].items()}
    concept.update({copy: concept[orig] for copy, orig in manifest["copies"].items()})
    return {rel for rel, c in concept.items() if label in c.split()}


def _pr(found: set[str], relevant: set[str]) -> dict[str, float]:
    tp = len(found & relevant)
    return {"precision": round(tp / len(found), 3) if found else 0.0, "recall": round(tp / max(len(relevant), 1), 3),
            "tagged": len(found), "relevant": len(relevant)}


def evaluate(model: str, seeds: list[int]) -> dict[str, Any]:
    from retrieval import Library

    counts: dict[tuple[str, str], dict[str, int]] = {}
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="xmr-eval-tags-") as tmp:
            media = Path(tmp) / "media"
            manifest = make_world(media, seed)
            lib = Library(Path(tmp) / "lib", model=model, create=True)
            lib.index([media])
            for form in ("exclusive", "alone"):
                for labels in SETS.values():
                    lib.untag(labels.split("|"))
                    lib.tag([labels] if form == "exclusive" else labels.split("|"), prompt="a {}")
                    for label in labels.split("|"):
                        found = {str(Path(r["path"]).relative_to(media)) for r in lib.tags(label)}
                        relevant = _relevant(manifest, label)
                        c = counts.setdefault((form, label), {"tp": 0, "found": 0, "relevant": 0})
                        c["tp"] += len(found & relevant)
                        c["found"] += len(found)
                        c["relevant"] += len(relevant)
            lib.close()
    out: dict[str, Any] = {"model": model, "seeds": seeds}
    for form, (name, labels) in ((f, n) for f in ("exclusive", "alone") for n in SETS.items()):
        per = {}
        for label in labels.split("|"):
            c = counts[(form, label)]
            per[label] = {"precision": round(c["tp"] / c["found"], 3) if c["found"] else 0.0,
                          "recall": round(c["tp"] / max(c["relevant"], 1), 3)}
        tp = sum(counts[(form, x)]["tp"] for x in labels.split("|"))
        found = sum(counts[(form, x)]["found"] for x in labels.split("|"))
        rel = sum(counts[(form, x)]["relevant"] for x in labels.split("|"))
        out[f"{name}_{form}"] = {"micro": {"precision": round(tp / max(found, 1), 3), "recall": round(tp / max(rel, 1), 3)},
                     "min_precision": min(v["precision"] for v in per.values()),
                     "min_recall": min(v["recall"] for v in per.values()), "labels": per}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", help="default: the demo model (trained once, cached)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    from scripts.demo import model_or_demo

    models = args.models or [model_or_demo(None)]
    print(json.dumps([evaluate(m, args.seeds) for m in models], indent=2))


if __name__ == "__main__":
    main()
