"""Text->image and image->text retrieval of a model through xmr, as open_clip's retrieval table
reports it (CLIP_benchmark's protocol): recall@1/5/10, in JSON.

text->image ("image retrieval"): for each caption, is its picture among the first k that
`Library.search` returns (the library's own FAISS index, mode "semantic")?
image->text ("text retrieval"): for each picture, is one of its captions among the k captions
nearest to the picture's stored vector (the captions encoded by the library's encoder)?

    python scripts/eval_images.py --model ViT-B-32 --pretrained laion2b_s34b_b79k --flickr30k ~/data/flickr30k
    python scripts/eval_images.py --model xlm-roberta-base-ViT-B-32 --pretrained laion5b_s13b_b90k --coco ~/data/coco
    python scripts/eval_images.py --synthetic --model local-dir:DIR    # data it makes: runs anywhere

Data, as the usual downloads lay them out:
  --flickr30k DIR   the Karpathy split `dataset_flickr30k.json` (its 1,000 test pictures, 5
                    captions each: the split open_clip's table uses) and the pictures in
                    DIR/flickr30k-images (or DIR/Images, DIR); without the JSON,
                    `results_20130124.token` (or `captions.txt`) and `--limit` pictures of it.
  --coco DIR        the Karpathy split `dataset_coco.json` (its 5,000 test pictures) with the
                    pictures under DIR/<filepath>/<filename>; without it,
                    DIR/annotations/captions_val2017.json and DIR/val2017 (5,000 pictures).
  --synthetic       one picture of each of the demo model's 24 concepts, 5 captions each.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file, from anywhere

KS = (1, 5, 10)


def karpathy(path: Path, root: Path, split: str = "test") -> list[tuple[Path, list[str]]]:
    """(picture, captions) of the Karpathy split file's `split`."""
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for im in data["images"]:
        if im.get("split") != split:
            continue
        folder = root / im["filepath"] if im.get("filepath") else next(
            (d for d in (root / "flickr30k-images", root / "Images", root) if (d / im["filename"]).exists()), root)
        out.append((folder / im["filename"], [s["raw"].strip() for s in im["sentences"]][:5]))
    return out


def flickr30k(root: Path, limit: int | None) -> list[tuple[Path, list[str]]]:
    if (root / "dataset_flickr30k.json").is_file():
        return karpathy(root / "dataset_flickr30k.json", root)
    captions: dict[str, list[str]] = defaultdict(list)
    token = root / "results_20130124.token"
    if token.is_file():  # "1000092795.jpg#0<TAB>Two young guys ..."
        for line in token.read_text(encoding="utf-8").splitlines():
            name, _, text = line.partition("\t")
            captions[name.split("#")[0]].append(text.strip())
    elif (root / "captions.txt").is_file():  # Kaggle's copy: "image,caption" CSV
        with open(root / "captions.txt", newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                captions[row["image"]].append(row["caption"].strip())
    else:
        raise SystemExit(f"no dataset_flickr30k.json, results_20130124.token or captions.txt in {root}")
    folder = next((d for d in (root / "flickr30k-images", root / "Images", root) if d.is_dir() and any(d.glob("*.jpg"))), root)
    names = sorted(captions)[: limit or 1000]
    return [(folder / n, captions[n][:5]) for n in names]


def coco(root: Path, limit: int | None) -> list[tuple[Path, list[str]]]:
    if (root / "dataset_coco.json").is_file():
        pairs = karpathy(root / "dataset_coco.json", root)
    else:
        ann = root / "annotations" / "captions_val2017.json"
        if not ann.is_file():
            raise SystemExit(f"no dataset_coco.json or annotations/captions_val2017.json in {root}")
        data = json.loads(ann.read_text(encoding="utf-8"))
        names = {im["id"]: im["file_name"] for im in data["images"]}
        caps: dict[int, list[str]] = defaultdict(list)
        for a in data["annotations"]:
            caps[a["image_id"]].append(a["caption"].strip())
        pairs = [(root / "val2017" / names[i], caps[i][:5]) for i in sorted(caps)]
    return pairs[:limit] if limit else pairs


def synthetic(folder: Path, seed: int) -> list[tuple[Path, list[str]]]:
    """One picture per concept of the demo model, each with its 5 captions."""
    from scripts.synthetic import CAPTION_TEMPLATES, CONCEPTS, draw

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n, c in enumerate(CONCEPTS):
        path = folder / f"{n:03d}.png"
        draw(c, rng).save(path)
        out.append((path, [t.format(color=c.color, shape=c.shape) for t in CAPTION_TEMPLATES[:5]]))
    return out


def recalls(ranks: list[int]) -> dict[str, float]:
    """ranks: for each query, the 0-based rank of its first right answer (a big number if none)."""
    return {f"R@{k}": round(sum(r < k for r in ranks) / len(ranks), 4) for k in KS}


def picture_ids(lib: Any) -> dict[str, int]:
    """{resolved path: item id} of the library's pictures (one item each)."""
    from sqlalchemy import select

    from indexer.catalog import File, Item

    with lib.store.Session() as s:
        rows = s.execute(select(File.path, Item.id).join(Item).where(Item.modality == "image")).all()
    return {str(Path(path).resolve()): item_id for path, item_id in rows}


def evaluate(lib: Any, pairs: list[tuple[Path, list[str]]], batch: int = 256) -> dict[str, Any]:
    """Index the pictures into `lib` and measure both directions."""
    import numpy as np

    t0 = time.perf_counter()
    report = lib.index([str(p) for p, _ in pairs])
    index_s = time.perf_counter() - t0
    texts = [t for _, caps in pairs for t in caps]
    owner = [i for i, (_, caps) in enumerate(pairs) for _ in caps]
    paths = [str(p.resolve()) for p, _ in pairs]
    enc = lib.encoder
    t0 = time.perf_counter()
    xt = np.concatenate([enc.encode_text(texts[i:i + batch]) for i in range(0, len(texts), batch)])
    # text -> image: xmr's own search over its index, pictures only.
    t2i = []
    for v, i in zip(xt, owner):
        hits = lib.search(vector=v, k=max(KS), type="image", mode="semantic")
        found = [str(Path(h.path).resolve()) for h in hits]
        t2i.append(found.index(paths[i]) if paths[i] in found else 10**9)
    # image -> text: each picture's stored vector against every caption.
    ids = picture_ids(lib)
    missing = [p for p in paths if p not in ids]
    xi = np.stack([lib.item_vector(ids[p]) if p in ids else np.zeros(xt.shape[1], np.float32) for p in paths])
    order = np.argsort(-(xi @ xt.T), axis=1)[:, : max(KS)]
    i2t = []
    for i, row in enumerate(order):
        right = [r for r, t in enumerate(row) if owner[t] == i]
        i2t.append(right[0] if right and paths[i] not in missing else 10**9)
    return {
        "pictures": len(pairs), "captions": len(texts), "indexed": report.new, "skipped": report.skipped,
        "image_retrieval": recalls(t2i),  # text -> image, as open_clip's "image retr. R@k"
        "text_retrieval": recalls(i2t),   # image -> text, as open_clip's "text retr. R@k"
        "index_s": round(index_s, 1), "search_s": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--flickr30k", type=Path, metavar="DIR")
    src.add_argument("--coco", type=Path, metavar="DIR")
    src.add_argument("--synthetic", action="store_true")
    ap.add_argument("--model", default=None, help="open_clip model spec (default: xmr's default)")
    ap.add_argument("--pretrained", default=None)
    ap.add_argument("--limit", type=int, default=None, help="at most this many pictures")
    ap.add_argument("--library", type=Path, default=None, help="keep the library here (default: a temporary one)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from retrieval import Library

    with tempfile.TemporaryDirectory(prefix="xmr-eval-") as tmp:
        if a.synthetic:
            pairs = synthetic(Path(tmp) / "pictures", a.seed)
        elif a.flickr30k:
            pairs = flickr30k(a.flickr30k.expanduser(), a.limit)
        else:
            pairs = coco(a.coco.expanduser(), a.limit)
        absent = [p for p, _ in pairs if not p.is_file()]
        if absent:
            raise SystemExit(f"{len(absent)} pictures of the split are missing, e.g. {absent[0]}")
        with Library(a.library or Path(tmp) / "lib", model=a.model, pretrained=a.pretrained, device=a.device,
                     create=True) as lib:
            result = evaluate(lib, pairs)
            result = {"model": lib.spec.describe(), "data": "synthetic" if a.synthetic else
                      ("flickr30k" if a.flickr30k else "coco"), **result}
    json.dump(result, sys.stdout, indent=2)
    print()
    return result


if __name__ == "__main__":
    main()
