"""Synthetic sounds for tests and the synthetic eval: tones, chirps, noise bursts, silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"), ".mp3": ("MP3", None)}


def synth(kind: str, seconds: float, rate: int = 44100, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """'tone', 'chirp', 'noise' (bursts of band noise) or 'silence', as float32 mono."""
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(seed)
    if kind == "tone":
        x = 0.4 * np.sin(2 * np.pi * freq * t)
    elif kind == "chirp":
        x = 0.4 * np.sin(2 * np.pi * (freq + 2 * freq * t / max(seconds, 1e-3)) * t)
    elif kind == "noise":
        x = rng.normal(0, 0.2, len(t)) * (np.sin(2 * np.pi * 2 * t) > 0)
    elif kind == "silence":
        x = np.zeros(len(t))
    else:
        raise ValueError(kind)
    return x.astype(np.float32)


def write_sound(path: str | Path, samples: np.ndarray, rate: int = 44100) -> Path:
    import soundfile as sf

    path = Path(path)
    fmt, subtype = FORMATS[path.suffix.lower()]
    sf.write(str(path), samples, rate, format=fmt, subtype=subtype)
    return path
