"""Indexing benchmark: end-to-end `Library.index` against the model alone and decoding alone.

    python scripts/bench_index.py [--images 96] [--size 1024x768] [--model ViT-B-32 --pretrained none]

Prints JSON. The model runs with random weights (timing does not depend on them). On a machine
whose cores are shared by decoding and the model, the best end to end can do is
ideal = 1 / (1/model_only + 1/decode_only).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.decode import load_image  # noqa: E402
from retrieval import Library  # noqa: E402
from retrieval.encoders import EncoderSpec, load_encoder  # noqa: E402
from scripts.synthetic import CONCEPTS, draw  # noqa: E402


def make_photos(folder: Path, n: int, size: tuple[int, int], seed: int) -> None:
    """Photo-sized JPEGs: a drawn shape, upscaled, with sensor-like noise so JPEG has work to do."""
    from PIL import Image

    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    for i in range(n):
        im = draw(CONCEPTS[i % len(CONCEPTS)], rng, size=256).resize(size)
        arr = np.asarray(im, dtype=np.int16) + nrng.integers(-12, 13, (size[1], size[0], 3))
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(folder / f"IMG_{i:04d}.jpg", quality=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--size", default="1024x768")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="xmr-bench-"))
    try:
        photos = work / "photos"
        photos.mkdir()
        make_photos(photos, a.images, (w, h), a.seed)
        files = sorted(str(p) for p in photos.iterdir())
        spec = EncoderSpec(model=a.model, pretrained=None if a.pretrained == "none" else a.pretrained)
        enc = load_encoder(spec, "cpu")

        # decode only: open + decode + EXIF + preprocess, on all cores
        t = time.perf_counter()
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            tensors = list(pool.map(lambda p: enc.preprocess_image(load_image(p)), files))
        decode_only = len(files) / (time.perf_counter() - t)

        # model only: ready tensors, same batches
        enc.encode_images(tensors[: a.batch_size])  # warm-up
        t = time.perf_counter()
        for i in range(0, len(tensors), a.batch_size):
            enc.encode_images(tensors[i : i + a.batch_size])
        model_only = len(files) / (time.perf_counter() - t)

        # naive: one image at a time, open -> decode -> preprocess -> encode
        t = time.perf_counter()
        for p in files[:16]:
            enc.encode_images([enc.preprocess_image(load_image(p))])
        naive = 16 / (time.perf_counter() - t)

        # The same loaded model: load time is not indexing time.
        lib = Library(work / "lib", encoder=enc, create=True)
        t = time.perf_counter()
        report = lib.index([photos], batch_size=a.batch_size, progress=False)
        end_to_end = report.items / (time.perf_counter() - t)
        ideal = 1 / (1 / model_only + 1 / decode_only)
        print(json.dumps({
            "images": len(files),
            "image_size": a.size,
            "model": spec.describe(),
            "cpu_count": os.cpu_count(),
            "decode_only_img_per_s": decode_only,
            "model_only_img_per_s": model_only,
            "naive_loop_img_per_s": naive,
            "end_to_end_img_per_s": end_to_end,
            "ideal_img_per_s": ideal,
            "end_to_end_vs_ideal": end_to_end / ideal,
            "end_to_end_vs_model_only": end_to_end / model_only,
            "end_to_end_vs_naive": end_to_end / naive,
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
