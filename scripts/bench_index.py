"""Indexing benchmark: end-to-end `Library.index` against the model alone, decoding alone, and
a naive loop. On a GPU (`--device cuda`) the pictures go the GPU path (JPEG bytes decoded there,
fp16 model), and ideal = min(device decode alone, model alone).

    python scripts/bench_index.py --images 48 --model ViT-B-32 [--pretrained none] [--size 4000x3000] [--ocr]
                                  [--decoders] [--device cuda]

Prints JSON. Photos are real-photo-sized JPEGs (12 MP, ~2.5 MB, photo-like content: colour
fields, shapes, sensor noise). The model runs with random weights (timing does not depend on
them). When the cores are shared by decoding and the model, the best end to end can do is
ideal = 1 / (1/model_only + 1/decode_only), where decode_only is xmr's decode + preprocess
(draft JPEG decoding) on all cores and model_only the encoder on ready tensors. The naive loop
opens, fully decodes, preprocesses and encodes one image at a time.

With --ocr (Tesseract's language data must be installed): the same photos indexed with OCR on
and with --no-ocr (fresh libraries, same loaded model; the ratio is the cost of OCR on photos
without text), and OCR's own cost per photo: the text test alone on photos without text, the
test plus reading on the same photos with a line of print drawn on them, and on photos of
fine texture (gravel-like noise, which the test passes on to Tesseract: the worst case).
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
    ap.add_argument("--batch-size", type=int, default=None, help="[default: the encoder's for its device]")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ocr", action="store_true", help="also measure OCR's cost (see above)")
    ap.add_argument("--decoders", action="store_true", help="also index with decode threads and with decode processes")
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
        batch = a.batch_size or enc.batch_size
        parts = stage_rates(enc, files, batch)
        # The same loaded model: load time is not indexing time.
        lib = Library(work / "lib", encoder=enc, create=True)
        t = time.perf_counter()
        report = lib.index([photos], batch_size=batch, ocr=False)
        end_to_end = report.items / (time.perf_counter() - t)
        decoders = decoder_rates(work, photos, enc, batch) if a.decoders else None
        ocr = ocr_costs(work, photos, files, enc, a) if a.ocr else None
        on_gpu = enc.device.startswith("cuda")
        # Cores shared by decoding and the model: 1 / (1/model + 1/decode). A GPU decodes and
        # runs the model itself, one after the other per batch: the slower bounds it.
        ideal = (min(parts["model_only_images_per_s"], parts["device_decode_only_images_per_s"]) if on_gpu
                 else 1 / (1 / parts["model_only_images_per_s"] + 1 / parts["decode_only_images_per_s"]))
        print(json.dumps({
            "images": len(files), "image_size": a.size, "mean_file_mb": round(mb, 2), "model": spec.describe(),
            "device": enc.device, "batch_size": batch, "cpu_count": os.cpu_count(),
            "images_per_s": round(end_to_end, 2), **{k: round(v, 2) for k, v in parts.items()},
            "ideal_images_per_s": round(ideal, 2),
            "end_to_end_vs_ideal": round(end_to_end / ideal, 3),
            "end_to_end_vs_naive": round(end_to_end / parts["naive_images_per_s"], 2),
            "photo_generation_s": round(gen_s, 1),
            **({"decoders": decoders} if decoders else {}),
            **({"ocr": ocr} if ocr else {}),
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stage_rates(enc: object, files: list[str], batch: int) -> dict[str, float]:
    """Images/s of each stage alone: CPU decode (draft, all cores), a full decode, the device
    decoder (nvjpeg on CUDA; torchvision's CPU decoder elsewhere), the model on ready uint8
    inputs (copied to its device as an index run does), the tower fed from device memory, and
    a naive loop."""
    size = enc.input_size
    t = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        tensors = list(pool.map(lambda p: enc.preprocess_image(load_image(p, size)), files))
    out = {"decode_only_images_per_s": len(files) / (time.perf_counter() - t)}
    t = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(lambda p: enc.preprocess_image(load_image(p)), files[:16]))
    out["full_decode_only_images_per_s"] = 16 / (time.perf_counter() - t)
    out["device_decode_only_images_per_s"] = device_decode_rate(enc, files, batch)
    enc.encode_images(tensors[:batch])  # warm-up
    t = time.perf_counter()
    for i in range(0, len(tensors), batch):
        enc.encode_images(tensors[i:i + batch])
    out["model_only_images_per_s"] = len(files) / (time.perf_counter() - t)
    out["tower_from_device_memory_images_per_s"] = tower_rate(enc, tensors, batch)
    t = time.perf_counter()
    for p in files[:16]:  # naive: one image at a time, open -> full decode -> preprocess -> encode
        enc.encode_images([enc.preprocess_image(load_image(p))])
    out["naive_images_per_s"] = 16 / (time.perf_counter() - t)
    return out


def device_decode_rate(enc: object, files: list[str], batch: int) -> float:
    """JPEG bytes read (threads) and decoded, turned and cropped where the model runs, in batches."""
    from indexer.kinds.image import read_jpeg
    from indexer.stages.device_jpeg import DeviceJpegs

    dj = DeviceJpegs(enc.device)
    sync = _sync(enc)
    dj.inputs([read_jpeg(files[0])], enc.preprocess, enc.input_size)  # warm-up (nvjpeg's handles)
    t = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        jpegs = list(pool.map(read_jpeg, files))
        for i in range(0, len(jpegs), batch):
            dj.inputs(jpegs[i:i + batch], enc.preprocess, enc.input_size)
    sync()
    return len(files) / (time.perf_counter() - t)


def tower_rate(enc: object, tensors: list[object], batch: int) -> float:
    """The image tower alone on inputs already in device memory, in the model's dtype."""
    import torch

    x = enc.model_input(tensors[:batch])
    sync = _sync(enc)
    reps = max(1, len(tensors) // batch)
    with torch.inference_mode():
        enc.model.encode_image(x, normalize=True)
        sync()
        t = time.perf_counter()
        for _ in range(reps):
            enc.model.encode_image(x, normalize=True)
        sync()
    return reps * len(x) / (time.perf_counter() - t)


def _sync(enc: object):
    import torch

    return torch.cuda.synchronize if enc.device.startswith("cuda") else (lambda: None)


def decoder_rates(work: Path, photos: Path, enc: object, batch: int) -> dict[str, float]:
    """End to end with decode threads and with decode processes (the choice `--decoder auto` makes
    by the core count is measured here), best of two, alternated."""
    rates: dict[str, list[float]] = {}
    for decoder in ("threads", "processes", "threads", "processes"):
        lib = Library(work / f"lib-{decoder}-{len(rates.get(decoder, []))}", encoder=enc, create=True)
        t = time.perf_counter()
        report = lib.index([photos], batch_size=batch, ocr=False, decoder=decoder)
        rates.setdefault(decoder, []).append(report.items / (time.perf_counter() - t))
    best = {k: max(v) for k, v in rates.items()}
    return {"threads_images_per_s": round(best["threads"], 2), "processes_images_per_s": round(best["processes"], 2),
            "processes_vs_threads": round(best["processes"] / best["threads"], 3)}


def ocr_costs(work: Path, photos: Path, files: list[str], enc: object, a: argparse.Namespace) -> dict[str, object]:
    """Indexing with OCR against --no-ocr, and OCR's cost per photo with and without text."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    from indexer.ocr import OCR_SIDE, Reader, likely_text

    reader = Reader()
    rates = {}
    for on in (False, True, False, True):  # alternated: the machine's load drifts
        lib = Library(work / f"lib-ocr-{on}-{len(rates)}", encoder=enc, create=True)
        t = time.perf_counter()
        report = lib.index([photos], batch_size=a.batch_size, ocr=on)
        rates.setdefault(on, []).append(report.items / (time.perf_counter() - t))

    def cost(paths: list[str]) -> tuple[float, float, int]:
        """ms per photo of the text test alone, of test + reading, and how many were read."""
        gate = full = 0.0
        read = 0
        for p in paths:
            picture = load_image(p, enc.input_size)  # decoded anyway, for the model
            t1 = time.perf_counter()
            passed = likely_text(picture)
            t2 = time.perf_counter()
            if passed:
                larger = picture if max(picture.size) >= OCR_SIDE else load_image(p, OCR_SIDE)
                read += reader.read(larger) is not None
            t3 = time.perf_counter()
            gate += t2 - t1
            full += t3 - t1
        return 1000 * gate / len(paths), 1000 * full / len(paths), read

    texty, rough = work / "texty", work / "rough"
    texty.mkdir()
    rough.mkdir()
    sample = files[:16]
    for i, p in enumerate(sample):
        im = Image.open(p).convert("RGB")
        # print from 1/50 to 1/19 of the photo's height: a sign, a poster, a page held up
        font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", max(16, im.height * (2 + i % 4) // 100))
        d = ImageDraw.Draw(im)
        x0, y0 = im.width // 10, im.height // 2
        d.rectangle((x0, y0, im.width - x0, y0 + font.size * 2), fill="white")
        d.text((x0 + font.size // 2, y0 + font.size // 2), f"Invoice INV-{48213 + i} paid in full", fill="black", font=font)
        im.save(texty / f"{i}.jpg", quality=90)
        noise = np.random.default_rng(i).integers(0, 256, (im.height // 8, im.width // 8, 3), dtype=np.uint8)
        Image.fromarray(noise).resize(im.size, Image.BICUBIC).filter(ImageFilter.SHARPEN).save(rough / f"{i}.jpg", quality=90)
    plain_gate, plain_full, plain_read = cost(sample)
    text_gate, text_full, text_read = cost(sorted(str(p) for p in texty.iterdir()))
    rough_gate, rough_full, rough_read = cost(sorted(str(p) for p in rough.iterdir()))
    with_ocr, without = max(rates[True]), max(rates[False])
    return {
        "engine": reader.identity()["engine"],
        "images_per_s_ocr": round(with_ocr, 2),
        "images_per_s_no_ocr": round(without, 2),
        "ocr_vs_no_ocr": round(with_ocr / without, 3),
        "photos_without_text_ms": {"text_test": round(plain_gate, 1), "test_and_read": round(plain_full, 1),
                                    "read": plain_read, "of": len(sample)},
        "photos_with_text_ms": {"text_test": round(text_gate, 1), "test_and_read": round(text_full, 1),
                                "read": text_read, "of": len(sample)},
        "fine_texture_ms": {"text_test": round(rough_gate, 1), "test_and_read": round(rough_full, 1),
                            "read": rough_read, "of": len(sample)},
    }


if __name__ == "__main__":
    main()
