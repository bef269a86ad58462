"""Photo-like JPEGs for benchmarks and tests: smooth colour fields, shapes and sensor noise, so
JPEG has real work to do (a 4000x3000 one is about 3 MB at quality 90)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def photo(width: int, height: int, seed: int = 0):  # -> PIL.Image.Image
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(field)
    for _ in range(12):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(width // 40, width // 6))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=colour)
    arr = np.asarray(field, dtype=np.int16)
    arr += rng.integers(-10, 11, arr.shape, dtype=np.int16)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def write_photos(folder: str | Path, n: int, size: tuple[int, int] = (4000, 3000), seed: int = 0) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"IMG_{i:04d}.jpg"
        photo(*size, seed=seed + i).save(p, quality=90)
        paths.append(p)
    return paths
