"""The face stage's cost: real-photo-sized JPEGs indexed with faces and with --no-faces (the
same loaded model, alternated: the machine's load drifts), on photos without faces and on
photos with them (real photos of real people from scripts/face_photos.py, put on photo-like
backgrounds at sizes from 4 % to 25 % of the long side); and the face model's own cost per
photo (its decoded copy, the detector, descriptors).

    python scripts/bench_faces.py [--images 24] [--size 4000x3000] [--calibrate 240] [--model ViT-B-32] [--pretrained none]

Each measured run adds the photos to a copy of a library that already holds `--calibrate`
photos (half with faces), so the face gate (indexer.face_gate) has learnt what it can from the
model: with real weights it passes over most photos without people; with random weights
(`--pretrained none`, the default: nothing else can be had offline here) it cannot tell, and
looks at nearly every photo. Prints JSON: images_per_s with and without faces for both sets,
their ratios, faces found, pictures the gate passed over, ms per photo of the face model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retrieval import Library  # noqa: E402
from retrieval.encoders import EncoderSpec, load_encoder  # noqa: E402
from scripts.photos import photo, write_photos  # noqa: E402


def with_faces(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> int:
    """`n` photo-like JPEGs, each with one real face photo pasted in; returns the faces put in."""
    from PIL import Image

    from scripts.face_photos import PEOPLE, face_photos

    sources = [Image.open(face_photos() / name).convert("RGB") for name in sorted(PEOPLE)]
    folder.mkdir(parents=True)
    for i in range(n):
        canvas = photo(*size, seed=seed + i)
        src = sources[i % len(sources)]
        # the face photo's face is about a third of its width: 4 % to 25 % of the long side
        share = 0.04 + 0.21 * (i % 8) / 7
        scale = share * max(size) / (src.width / 3)
        pasted = src.resize((max(1, round(src.width * scale)), max(1, round(src.height * scale))))
        canvas.paste(pasted, ((i * 997) % max(1, size[0] - pasted.width), (i * 613) % max(1, size[1] - pasted.height)))
        canvas.save(folder / f"{i:04d}.jpg", quality=90)
    return n


def gate_skipped(library: Path) -> int:
    from indexer.catalog import get_meta

    with Library(library) as lib, lib.Session() as s:
        return int((get_meta(s, "face_gate") or {}).get("skipped", 0))


def rates(work: Path, photos: Path, enc: object, label: str, warm: Path | None) -> dict[str, object]:
    got: dict[bool, list[float]] = {}
    found = skipped = 0
    for on in (False, True, False, True):
        path = work / f"lib-{label}-{on}-{len(got.get(on, []))}"
        if warm is not None:
            shutil.copytree(warm, path)
        lib = Library(path, encoder=enc, create=True)
        before = gate_skipped(path) if warm is not None else 0
        t = time.perf_counter()
        report = lib.index([photos], faces=on)
        got.setdefault(on, []).append(report.new / (time.perf_counter() - t))
        found = max(found, report.faces)
        lib.close()
        if on:
            skipped = gate_skipped(path) - before
        shutil.rmtree(path)
    best_on, best_off = max(got[True]), max(got[False])
    return {"images_per_s_faces": round(best_on, 2), "images_per_s_no_faces": round(best_off, 2),
            "ratio": round(best_on / best_off, 3), "faces_found": found, "gate_passed_over": skipped}


def calibrated(work: Path, enc: object, n: int, size: tuple[int, int]) -> Path | None:
    """A library of `n` photos, half with faces, indexed with faces: its gate has learnt."""
    if n <= 0:
        return None
    folder = work / "calibration"
    write_photos(folder, n // 2, size, seed=10_000)
    with_faces(folder / "people", n - n // 2, size, seed=20_000)
    lib = Library(work / "warm", encoder=enc, create=True)
    lib.index([folder], faces=True)
    lib.close()
    return work / "warm"


def model_cost(photos: Path) -> dict[str, float]:
    """ms per photo: its copy for the face model (decoded at 1000 px on the long side), and the
    face model on it (one thread)."""
    from indexer.faces import MAX_SIDE, FaceCopy, FaceModel
    from indexer.kinds.image import load_image

    model = FaceModel()
    model._models()
    files = sorted(photos.iterdir())
    copy_s = find_s = 0.0
    for p in files:
        t1 = time.perf_counter()
        pixels = FaceCopy(MAX_SIDE)(load_image(str(p), long_side=MAX_SIDE))
        t2 = time.perf_counter()
        model.find(pixels)
        t3 = time.perf_counter()
        copy_s += t2 - t1
        find_s += t3 - t2
    return {"copy_ms": round(1000 * copy_s / len(files), 1), "find_ms": round(1000 * find_s / len(files), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--calibrate", type=int, default=240, help="photos in the library before (half with faces)")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="none")
    a = ap.parse_args()
    size = tuple(map(int, a.size.split("x")))
    work = Path(tempfile.mkdtemp(prefix="xmr-bench-faces-"))
    try:
        plain, faces = work / "plain", work / "faces"
        write_photos(plain, a.images, size)  # type: ignore[arg-type]
        put = with_faces(faces, a.images, size)  # type: ignore[arg-type]
        enc = load_encoder(EncoderSpec(model=a.model, pretrained=None if a.pretrained == "none" else a.pretrained), "cpu")
        t = time.perf_counter()
        warm = calibrated(work, enc, a.calibrate, size)  # type: ignore[arg-type]
        warm_s = time.perf_counter() - t
        print(json.dumps({
            "images": a.images, "image_size": a.size, "model": a.model, "pretrained": a.pretrained,
            "calibration_photos": a.calibrate, "calibration_s": round(warm_s, 1),
            "without_faces": {**rates(work, plain, enc, "plain", warm), **model_cost(plain)},
            "with_faces": {**rates(work, faces, enc, "faces", warm), **model_cost(faces), "faces_put": put},
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
