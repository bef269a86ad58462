"""Indexing benchmark: end-to-end `Library.index` against the model alone, decoding alone, and
a naive loop.

    python scripts/bench_index.py --images 48 --model ViT-B-32 [--pretrained none] [--size 4000x3000]

Prints JSON. Photos are real-photo-sized JPEGs (12 MP, ~2.5 MB, photo-like content: colour
fields, shapes, sensor noise). The model runs with random weights (timing does not depend on
them). When the cores are shared by decoding and the model, the best end to end can do is
ideal = 1 / (1/model_only + 1/decode_only), where decode_only is xmr's decode + preprocess
(draft JPEG decoding) on all cores and model_only the encoder on ready tensors. The naive loop
opens, fully decodes, preprocesses and encodes one image at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.kinds.image import load_image  # noqa: E402
from retrieval import Library  # noqa: E402
from retrieval.encoders import EncoderSpec, load_encoder  # noqa: E402
from scripts.photos import write_photos  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="xmr-bench-"))
    try:
        photos = work / "photos"
        t = time.perf_counter()
        write_photos(photos, a.images, (w, h), a.seed)
        gen_s = time.perf_counter() - t
        files = sorted(str(p) for p in photos.iterdir())
        mb = sum(os.path.getsize(p) for p in files) / len(files) / 1e6
        spec = EncoderSpec(model=a.model, pretrained=None if a.pretrained == "none" else a.pretrained)
        enc = load_encoder(spec, a.device)
        size = enc.input_size

        # decode only: open + draft decode + EXIF + preprocess, on all cores
        t = time.perf_counter()
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            tensors = list(pool.map(lambda p: enc.preprocess_image(load_image(p, size)), files))
        decode_only = len(files) / (time.perf_counter() - t)
        t = time.perf_counter()
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(lambda p: enc.preprocess_image(load_image(p)), files[:16]))
        full_decode = 16 / (time.perf_counter() - t)

        # model only: ready tensors, same batches
        enc.encode_images(tensors[: a.batch_size])  # warm-up
        t = time.perf_counter()
        for i in range(0, len(tensors), a.batch_size):
            enc.encode_images(tensors[i : i + a.batch_size])
        model_only = len(files) / (time.perf_counter() - t)

        # naive: one image at a time, open -> full decode -> preprocess -> encode
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
            "mean_file_mb": round(mb, 2),
            "model": spec.describe(),
            "device": enc.device,
            "batch_size": a.batch_size,
            "cpu_count": os.cpu_count(),
            "images_per_s": round(end_to_end, 2),
            "model_only_images_per_s": round(model_only, 2),
            "decode_only_images_per_s": round(decode_only, 2),
            "full_decode_only_images_per_s": round(full_decode, 2),
            "ideal_images_per_s": round(ideal, 2),
            "naive_images_per_s": round(naive, 2),
            "end_to_end_vs_ideal": round(end_to_end / ideal, 3),
            "end_to_end_vs_naive": round(end_to_end / naive, 2),
            "photo_generation_s": round(gen_s, 1),
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
