"""Synthetic pictures and captions: coloured shapes that a tiny CLIP can learn in a minute.

Used by the demo model trainer, the demo's sample folder, the tests and the benchmarks.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 170),
    "orange": (250, 140, 20),
}
SHAPES = ("circle", "square", "triangle", "star")
CAPTION_TEMPLATES = (
    "a {color} {shape}",
    "a photo of a {color} {shape}",
    "a {shape} that is {color}",
    "a picture of one {color} {shape} on a plain background",
    "{color} {shape}",
    "a drawing of a {color} {shape}",
)


@dataclass(frozen=True)
class Concept:
    color: str
    shape: str

    def caption(self, rng: random.Random | None = None) -> str:
        template = rng.choice(CAPTION_TEMPLATES) if rng else CAPTION_TEMPLATES[0]
        return template.format(color=self.color, shape=self.shape)


CONCEPTS = tuple(Concept(c, s) for c in COLORS for s in SHAPES)


def _star(cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        rr = r if i % 2 == 0 else r * 0.45
        a = rot + i * math.pi / 5 - math.pi / 2
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _polygon(cx: float, cy: float, r: float, n: int, rot: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(rot + 2 * math.pi * i / n), cy + r * math.sin(rot + 2 * math.pi * i / n)) for i in range(n)]


def draw(concept: Concept, rng: random.Random, size: int | None = None) -> Image.Image:
    """One picture of `concept`: random size, background, position, scale and rotation."""
    w = size or rng.randint(72, 160)
    h = size or rng.randint(72, 160)
    g = rng.randint(60, 235)
    bg = tuple(min(255, max(0, g + rng.randint(-25, 25))) for _ in range(3))
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    m = min(w, h)
    r = m * rng.uniform(0.22, 0.36)
    # Inside the central square, which is what a CLIP centre crop keeps.
    x0, y0 = (w - m) / 2, (h - m) / 2
    cx = x0 + rng.uniform(r + 2, m - r - 2)
    cy = y0 + rng.uniform(r + 2, m - r - 2)
    jitter = lambda v: min(255, max(0, v + rng.randint(-20, 20)))  # noqa: E731
    fill = tuple(jitter(v) for v in COLORS[concept.color])
    rot = rng.uniform(0, 2 * math.pi)
    if concept.shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif concept.shape == "square":
        d.polygon(_polygon(cx, cy, r * 1.15, 4, rot), fill=fill)
    elif concept.shape == "triangle":
        d.polygon(_polygon(cx, cy, r * 1.2, 3, rot), fill=fill)
    else:
        d.polygon(_star(cx, cy, r * 1.25, rot), fill=fill)
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return im
