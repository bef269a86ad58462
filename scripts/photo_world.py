"""A labelled photo folder in the demo model's world, for filters, the cutoff, tags and dupes:
JPEGs of coloured shapes with classes of very different sizes, EXIF dates, cameras and GPS
places seeded per picture, and planted duplicates (a byte copy, a re-encoded copy, a resized
copy) of a few of them.

    python -m scripts.photo_world OUT [--seed 0]       # writes OUT and OUT/manifest.json

The manifest: {"pictures": {relative path: {concept, taken, camera, place}}, "copies":
{copy: original}, "sizes": {concept: count}}. Used by tests/test_organize.py and
scripts/eval_cutoff.py.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from scripts.synthetic import CONCEPTS, draw

CAMERAS = (("Canon", "Canon EOS 5D Mark IV"), ("NIKON CORPORATION", "NIKON D750"), ("Apple", "iPhone 13"))
PLACES = {"paris": (48.8566, 2.3522), "tokyo": (35.6762, 139.6503), "lima": (-12.0464, -77.0428)}


def _exif(taken: datetime, camera: tuple[str, str] | None, place: tuple[float, float] | None) -> Image.Exif:
    exif = Image.Exif()
    if camera:
        exif[0x010F], exif[0x0110] = camera
    exif.get_ifd(0x8769)[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
    if place:
        gps = exif.get_ifd(0x8825)
        lat, lon = place
        for ref_tag, tag, value, refs in ((1, 2, lat, "NS"), (3, 4, lon, "EW")):
            v = abs(value)
            d, m = int(v), int((v - int(v)) * 60)
            sec = round(((v - d) * 60 - m) * 60, 4)
            gps[ref_tag] = refs[0] if value >= 0 else refs[1]
            gps[tag] = (float(d), float(m), float(sec))
    return exif


def class_sizes(n_classes: int, seed: int) -> list[int]:
    """Sizes from 2 to about 30: some concepts are rare in a library, some common."""
    rng = random.Random(seed)
    return [rng.choice((2, 3, 4, 6, 8, 12, 16, 20, 30)) for _ in range(n_classes)]


def make_world(out: str | Path, seed: int = 0, concepts: int = 24, copies: bool = True, notes: bool = False) -> dict[str, Any]:
    out = Path(out)
    (out / "photos").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    chosen = list(CONCEPTS)[:concepts]
    sizes = dict(zip((f"{c.color} {c.shape}" for c in chosen), class_sizes(len(chosen), seed)))
    todo = [c for c in chosen for _ in range(sizes[f"{c.color} {c.shape}"])]
    rng.shuffle(todo)
    pictures: dict[str, dict[str, Any]] = {}
    for n, concept in enumerate(todo):
        taken = datetime(2019 + n % 5, 1 + n % 12, 1 + n % 28, 8 + n % 12, n % 60)
        camera = CAMERAS[n % 3] if n % 4 else None
        place_name = list(PLACES)[n % 3] if n % 5 else None
        rel = f"photos/{2019 + n % 5}/IMG_{n:04d}.jpg"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        draw(concept, rng, size=rng.randint(120, 200)).save(
            out / rel, "JPEG", quality=92, exif=_exif(taken, camera, PLACES.get(place_name) if place_name else None))
        pictures[rel] = {"concept": f"{concept.color} {concept.shape}", "taken": taken.isoformat(),
                         "camera": camera[1] if camera else None, "place": place_name}
    planted: dict[str, str] = {}
    if copies:
        originals = sorted(pictures)[:3]
        (out / "copies").mkdir(exist_ok=True)
        shutil.copyfile(out / originals[0], out / "copies" / "byte-copy.jpg")
        planted["copies/byte-copy.jpg"] = originals[0]
        with Image.open(out / originals[1]) as im:
            im.save(out / "copies" / "re-encoded.jpg", "JPEG", quality=60, exif=im.getexif())  # EXIF kept, as sharing apps do
        planted["copies/re-encoded.jpg"] = originals[1]
        with Image.open(out / originals[2]) as im:
            im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.LANCZOS).save(
                out / "copies" / "resized.jpg", "JPEG", quality=90, exif=im.getexif())
        planted["copies/resized.jpg"] = originals[2]
    written: dict[str, str] = {}
    if notes:  # caption notes, 1 to 6 a concept: the same classes in another kind
        (out / "notes").mkdir(exist_ok=True)
        for c in chosen:
            for i in range(rng.randint(1, 6)):
                rel = f"notes/{c.color}-{c.shape}-{i}.txt"
                (out / rel).write_text(c.caption(rng) + "\n", encoding="utf-8")
                written[rel] = f"{c.color} {c.shape}"
    manifest = {"pictures": pictures, "copies": planted, "notes": written, "sizes": sizes}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    m = make_world(a.out, a.seed)
    print(json.dumps({"pictures": len(m["pictures"]), "copies": len(m["copies"])}))


if __name__ == "__main__":
    main()
