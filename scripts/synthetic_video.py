"""Synthetic videos for tests, the hostile corpus and bench_video.py: scenes of the demo model's
coloured shapes, each with a tone of its own, encoded by PyAV (H.264 + AAC in mp4 by default)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from scripts.synthetic import Concept, draw
from scripts.synthetic_audio import synth


@dataclass(frozen=True)
class Scene:
    concept: Concept
    seconds: float
    tone: float | None = None  # Hz of its sound; None: silence
    caption: str | None = None  # a line of print on a white band across it (words on screen)
    picture: Any = None  # a PIL picture shown instead of the concept's drawing (a photo: faces)


def make_video(path: str | Path, scenes: list[Scene], *, size: tuple[int, int] = (160, 120), fps: int = 12,
               codec: str = "libx264", audio: bool = True, seed: int = 0, rotation: int = 0,
               rate: int = 44100) -> list[float]:
    """Write the video and return the true cut times (seconds) between its scenes. Each scene
    is one drawn picture (the shape drifts a little, so frames are not all alike)."""
    import av

    rng = random.Random(seed)
    path = Path(path)
    cuts, t = [], 0.0
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=fps)
        v.width, v.height = size
        v.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "libx264":
            v.options = {"preset": "ultrafast", "tune": "zerolatency"}
        if rotation:
            v.set_display_rotation(rotation)
        a = out.add_stream("aac", rate=rate, layout="mono") if audio else None
        n_frame, n_sample = 0, 0
        for scene in scenes:
            still = (scene.picture.convert("RGB") if scene.picture is not None
                     else draw(scene.concept, rng, size=max(size))).resize(size)
            if scene.caption:
                _caption(still, scene.caption)
            frames = int(round(scene.seconds * fps))
            for i in range(frames):
                shift = np.roll(np.asarray(still), i % 3, axis=1)
                frame = av.VideoFrame.from_ndarray(shift, format="rgb24")
                frame.pts, frame.time_base = n_frame, Fraction(1, fps)
                out.mux(v.encode(frame))
                n_frame += 1
            if a is not None:
                samples = synth("tone", scene.seconds, rate, scene.tone) if scene.tone else synth("silence", scene.seconds, rate)
                for j in range(0, len(samples), 1024):
                    block = samples[j : j + 1024].reshape(1, -1)
                    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="flt", layout="mono")
                    af.sample_rate, af.pts, af.time_base = rate, n_sample, Fraction(1, rate)
                    n_sample += block.shape[1]
                    out.mux(a.encode(af))
            t += scene.seconds
            cuts.append(t)
        out.mux(v.encode(None))
        if a is not None:
            out.mux(a.encode(None))
    return cuts[:-1]


def _caption(image: Any, line: str) -> None:
    """Print `line` on a white band across the lower third (DejaVu Sans)."""
    from PIL import ImageDraw, ImageFont

    w, h = image.size
    size = max(12, h // 9)
    band = (0, int(h * 0.62), w, int(h * 0.62) + int(size * 1.8))
    canvas = ImageDraw.Draw(image)
    canvas.rectangle(band, fill="white")
    canvas.text((w // 20, band[1] + size // 3), line, fill="black",
                font=ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", size))
