"""Write a small sample media folder: pictures of coloured shapes and notes describing them.

    python -m scripts.make_samples OUT_DIR [--seed S]

File names say nothing about the content, so a search can only find things by meaning.
Returns/prints a manifest: relative path -> the concept it shows or talks about.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from PIL import Image

from scripts.synthetic import CONCEPTS, Concept, draw

IMAGE_FORMATS = (("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"), ("bmp", "BMP"), ("gif", "GIF"), ("tiff", "TIFF"))
EXIF_ORIENTATION = 0x0112


def _save(im: Image.Image, path: Path, fmt: str) -> None:
    if fmt == "JPEG":
        im.save(path, fmt, quality=92)
    else:
        im.save(path, fmt)


def make_samples(out_dir: str | Path, seed: int = 0, per_concept: int = 1, notes: bool = True) -> dict[str, str]:
    """Create the folder; returns {relative path: 'color shape'}."""
    out = Path(out_dir)
    (out / "photos").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    manifest: dict[str, str] = {}
    pictures = [c for c in CONCEPTS for _ in range(per_concept)]
    rng.shuffle(pictures)
    for n, concept in enumerate(pictures, 1):
        ext, fmt = IMAGE_FORMATS[n % len(IMAGE_FORMATS)]
        rel = f"photos/IMG_{n:04d}.{ext}"
        im = draw(concept, rng)
        if n == 1:  # one JPEG stored sideways with an EXIF orientation tag, as phones do
            rel = f"photos/IMG_{n:04d}.jpg"
            exif = Image.Exif()
            exif[EXIF_ORIENTATION] = 6  # "rotate 90 CW to display"
            im.transpose(Image.Transpose.ROTATE_90).save(out / rel, "JPEG", quality=92, exif=exif)
        else:
            _save(im, out / rel, fmt)
        manifest[rel] = f"{concept.color} {concept.shape}"
    if notes:
        (out / "notes").mkdir(exist_ok=True)
        described = rng.sample(list(CONCEPTS), 8)
        for n, concept in enumerate(described, 1):
            rel = f"notes/note-{n:02d}.{'md' if n % 2 else 'txt'}"
            (out / rel).write_text(f"{concept.caption(rng)}\n", encoding="utf-8")
            manifest[rel] = f"{concept.color} {concept.shape}"
        # A longer document: several paragraphs, more than one text-encoder context.
        paras = [
            f"Day {i}. Today I drew {c.caption(rng)}. " + " ".join(c.caption(rng) + "." for _ in range(6))
            for i, c in enumerate(rng.sample(list(CONCEPTS), 4), 1)
        ]
        (out / "notes" / "journal.md").write_text("# Drawing journal\n\n" + "\n\n".join(paras) + "\n", encoding="utf-8")
        manifest["notes/journal.md"] = "mixed"
    return manifest


def concept_of(label: str) -> Concept:
    color, shape = label.split()
    return Concept(color, shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(json.dumps(make_samples(a.out_dir, a.seed), indent=2))


if __name__ == "__main__":
    main()
