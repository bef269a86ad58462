"""scripts/eval_images.py: recall@k both ways through a library, on data it makes (--synthetic)
and on Flickr30k / COCO laid out as their downloads are (here, tiny stand-ins of both)."""

from __future__ import annotations

import json
import random

from scripts import eval_images
from scripts.synthetic import CONCEPTS, draw


def test_synthetic_recall_tells_a_trained_model_from_a_random_one(trained_model, random_model, capsys):
    good = eval_images.main(["--synthetic", "--model", trained_model])
    printed = json.loads(capsys.readouterr().out)
    assert printed == good and good["pictures"] == 24 and good["captions"] == 120 and good["skipped"] == 0
    assert good["image_retrieval"]["R@5"] >= 0.9 and good["text_retrieval"]["R@5"] >= 0.9, good
    for way in ("image_retrieval", "text_retrieval"):
        r = good[way]
        assert r["R@1"] <= r["R@5"] <= r["R@10"]
    bad = eval_images.main(["--synthetic", "--model", random_model])
    assert bad["image_retrieval"]["R@1"] < 0.5 and bad["image_retrieval"]["R@1"] < good["image_retrieval"]["R@1"], bad


def _pictures(folder, names, seed=0):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    concepts = {}
    for n, name in enumerate(names):
        c = CONCEPTS[n % len(CONCEPTS)]
        draw(c, rng).save(folder / name)
        concepts[name] = c
    return concepts


def test_flickr30k_and_coco_layouts(tmp_path, trained_model):
    # Flickr30k with the Karpathy split: only its test pictures count.
    root = tmp_path / "flickr30k"
    names = [f"{n}.jpg" for n in range(8)]
    concepts = _pictures(root / "flickr30k-images", names)
    split = {"images": [{"filename": n, "split": "test" if i < 6 else "train",
                         "sentences": [{"raw": concepts[n].caption()} for _ in range(5)]} for i, n in enumerate(names)]}
    (root / "dataset_flickr30k.json").write_text(json.dumps(split))
    result = eval_images.main(["--flickr30k", str(root), "--model", trained_model])
    assert result["data"] == "flickr30k" and result["pictures"] == 6 and result["captions"] == 30
    assert result["text_retrieval"]["R@5"] == 1.0
    # ... and with only the original token file.
    (root / "dataset_flickr30k.json").unlink()
    (root / "results_20130124.token").write_text(
        "".join(f"{n}#{k}\t{concepts[n].caption()}\n" for n in names for k in range(5)))
    pairs = eval_images.flickr30k(root, limit=3)
    assert [p.name for p, _ in pairs] == ["0.jpg", "1.jpg", "2.jpg"] and all(len(c) == 5 for _, c in pairs)
    # COCO 2017 annotations.
    coco = tmp_path / "coco"
    concepts = _pictures(coco / "val2017", ["000000000139.jpg", "000000000285.jpg"])
    (coco / "annotations").mkdir()
    (coco / "annotations" / "captions_val2017.json").write_text(json.dumps({
        "images": [{"id": 139, "file_name": "000000000139.jpg"}, {"id": 285, "file_name": "000000000285.jpg"}],
        "annotations": [{"image_id": i, "caption": f" caption {k} of {i} "} for i in (139, 285) for k in range(6)]}))
    pairs = eval_images.coco(coco, limit=None)
    assert [p.name for p, _ in pairs] == ["000000000139.jpg", "000000000285.jpg"]
    assert pairs[0][1] == [f"caption {k} of 139" for k in range(5)]
