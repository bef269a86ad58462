"""Words beside meaning, measured on a labelled set: does hybrid search find the passage holding a
rare exact word, where meaning alone does not, without losing what meaning finds on paraphrases?

The set (built here, seeded): for each of the demo model's 24 concepts (6 colours x 4 shapes),
NOTES_PER_CONCEPT short notes that describe it in the wordings the model knows (templates 0-2
of scripts.synthetic), one of them also carrying a rare exact token: an order number
(ORD-48213), a surname (Oyelaran), an error code (E-4471)...; and, for each concept, one more
note about another concept written in this concept's query wording (a lexical distractor).

- rare-word queries: the token alone; the one note holding it is the answer (24 queries);
- mixed queries: the shape and the token ("circle ORD-48213"); the same answer (24 queries);
- paraphrase queries: the concept in a wording its own notes do not use (templates 3-5); the
  concept's notes are the answers (24 queries);
- picture queries: "a {colour} {shape}" in a library that also holds PICTURES_PER_CONCEPT
  pictures of each concept: the concept's pictures and notes are the answers, while the notes
  of its colour or its shape share a word of the query (the demo's "a green square").

Reported per mode (semantic, words, hybrid): rare-word hit@3 (is the answer in the top 3) and
paraphrase recall@3 (answers in the top 3, of 3) and MRR. The model: the demo model (trained
once and cached, ~1 min), whose text tower knows these wordings.

    python -m scripts.eval_words [--model local-dir:DIR] [--seed 0] [--lifts 0,1,1.5,2]

With --lifts, hybrid is measured at each LIFT_RARE (retrieval.hybrid).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path
from typing import Any

from scripts.synthetic import CAPTION_TEMPLATES, CONCEPTS

NOTES_PER_CONCEPT = 3
PICTURES_PER_CONCEPT = 2
SURNAMES = ("Oyelaran", "Vukovich", "Thorsdottir", "Nakashima", "Abernethy", "Kowalczyk", "Fitzwilliam", "Adeyemi",
            "Lindqvist", "Castellanos", "Okonkwo", "Przybylski")


def rare_tokens(seed: int) -> list[str]:
    """One rare exact token per concept: order numbers, surnames and error codes, shuffled."""
    rng = random.Random(seed)
    tokens = [f"ORD-{rng.randrange(10000, 99999)}" for _ in range(6)] + list(SURNAMES) + \
             [f"E-{rng.randrange(1000, 9999)}" for _ in range(6)]
    rng.shuffle(tokens)
    return tokens[: len(CONCEPTS)]


def build(folder: Path, seed: int = 0) -> dict[str, Any]:
    """Write the notes; return the queries with their answers (file names)."""
    tokens = rare_tokens(seed)
    rare, paraphrase, mixed = [], [], []
    for c, (concept, token) in enumerate(zip(CONCEPTS, tokens)):
        names = []
        for n in range(NOTES_PER_CONCEPT):
            text = CAPTION_TEMPLATES[n].format(color=concept.color, shape=concept.shape)
            if n == 0:
                text += f", {token}"
            name = f"note-{c:02d}-{n}.txt"
            (folder / name).write_text(text, encoding="utf-8")
            names.append(name)
        rare.append({"query": token, "answers": [names[0]]})
        mixed.append({"query": f"{concept.shape} {token}", "answers": [names[0]]})
        wording = CAPTION_TEMPLATES[3 + c % 3].format(color=concept.color, shape=concept.shape)
        paraphrase.append({"query": wording, "answers": names})
    # A note in each query's own wording about another concept: it shares the query's filler
    # words, so the words alone rank it high for the wrong query (it answers its own concept's).
    for c in range(len(CONCEPTS)):
        other = (c + 7) % len(CONCEPTS)
        name = f"note-{other:02d}-x.txt"
        concept = CONCEPTS[other]
        (folder / name).write_text(CAPTION_TEMPLATES[3 + c % 3].format(color=concept.color, shape=concept.shape),
                                   encoding="utf-8")
        paraphrase[other]["answers"].append(name)
    return {"rare": rare, "mixed": mixed, "paraphrase": paraphrase, "pictures": pictures(folder, seed, paraphrase)}


def pictures(folder: Path, seed: int, paraphrase: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PICTURES_PER_CONCEPT pictures of each concept; a query per concept, answered by its
    pictures and its notes."""
    from scripts.synthetic import draw

    rng = random.Random(seed + 1)
    out = []
    for c, concept in enumerate(CONCEPTS):
        names = []
        for n in range(PICTURES_PER_CONCEPT):
            name = f"picture-{c:02d}-{n}.png"
            draw(concept, rng, size=96).save(folder / name)
            names.append(name)
        out.append({"query": CAPTION_TEMPLATES[0].format(color=concept.color, shape=concept.shape),
                    "answers": names + paraphrase[c]["answers"]})
    return out


def score(lib: Any, queries: list[dict[str, Any]], mode: str, k: int = 3) -> dict[str, float]:
    hit, recall, rr = 0, 0.0, 0.0
    for q in queries:
        found = [Path(h.path).name for h in lib.search(q["query"], k=10, mode=mode)]
        answers = set(q["answers"])
        hit += any(name in answers for name in found[:k])
        recall += len(answers & set(found[:k])) / min(k, len(answers))
        rr += next((1.0 / (i + 1) for i, name in enumerate(found) if name in answers), 0.0)
    n = len(queries)
    return {f"hit@{k}": round(hit / n, 3), f"recall@{k}": round(recall / n, 3), "mrr": round(rr / n, 3)}


def evaluate(model: str, seed: int = 0, lifts: list[float] | None = None) -> dict[str, Any]:
    from retrieval import Library, ranking
    from retrieval.paging import Memo

    with tempfile.TemporaryDirectory(prefix="xmr-eval-words-") as tmp:
        notes = Path(tmp) / "notes"
        notes.mkdir()
        queries = build(notes, seed)
        lib = Library(Path(tmp) / "lib", model=model, create=True)
        lib.index([notes])
        out: dict[str, Any] = {"notes": len(CONCEPTS) * (NOTES_PER_CONCEPT + 1),
                               "pictures": len(CONCEPTS) * PICTURES_PER_CONCEPT, "seed": seed,
                               "lift_common": ranking.LIFT_COMMON, "lift_rare": ranking.LIFT_RARE}
        for kind, qs in queries.items():
            out[kind] = {"queries": len(qs), **{mode: score(lib, qs, mode) for mode in ("semantic", "words", "hybrid")}}
        default = ranking.LIFT_RARE
        for lift in lifts or []:
            ranking.LIFT_RARE, lib.searcher.memo = lift, Memo()
            for kind, qs in queries.items():
                out[kind][f"hybrid_rare_{lift:g}"] = score(lib, qs, "hybrid")
        ranking.LIFT_RARE = default
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="default: the demo model (trained once, cached)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lifts", help="comma-separated lifts to measure hybrid at, e.g. 0,1,1.5,2")
    args = ap.parse_args()
    from scripts.demo import model_or_demo

    model = model_or_demo(args.model)
    lifts = [float(x) for x in args.lifts.split(",")] if args.lifts else None
    print(json.dumps(evaluate(model, args.seed, lifts), indent=2))


if __name__ == "__main__":
    main()
