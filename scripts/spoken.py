"""Speech for tests and benchmarks: sentences spoken by espeak-ng (Debian's `espeak-ng`), laid on
a timeline with silence between them, written as WAV, MP3, or the sound track of a video.

    python -m scripts.spoken OUT.wav "first sentence" "second sentence"
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

RATE = 22050  # espeak-ng's own
GAP_S = 2.0


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def say(text: str, speed: int = 160) -> np.ndarray:
    """One sentence as mono float32 samples at RATE Hz."""
    import soundfile as sf

    wav = subprocess.run(["espeak-ng", "-s", str(speed), "--stdout", text], check=True, capture_output=True).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == RATE, rate
    return samples.reshape(-1)


def timeline(sentences: list[str], gap: float = GAP_S, lead: float = 1.0) -> tuple[np.ndarray, list[float]]:
    """The sentences one after another, `gap` seconds of silence between them and `lead`
    before the first; (samples, the second each sentence starts at)."""
    parts, starts, t = [np.zeros(int(lead * RATE), np.float32)], [], lead
    for s in sentences:
        spoken = say(s)
        starts.append(round(t, 3))
        parts += [spoken, np.zeros(int(gap * RATE), np.float32)]
        t += len(spoken) / RATE + gap
    return np.concatenate(parts), starts


def write_speech(path: str | Path, sentences: list[str], gap: float = GAP_S) -> list[float]:
    """A WAV or MP3 (by the name) of the sentences; returns where each starts, in seconds."""
    samples, starts = timeline(sentences, gap)
    path = Path(path)
    if path.suffix.lower() == ".wav":
        import soundfile as sf

        sf.write(str(path), samples, RATE)
    else:
        _encode(path, samples, codec="libmp3lame" if path.suffix.lower() == ".mp3" else "aac")
    return starts


def _encode(path: Path, samples: np.ndarray, codec: str, video: bool = False) -> None:
    import av

    with av.open(str(path), "w") as out:
        v = None
        if video:
            v = out.add_stream("libx264", rate=10)
            v.width, v.height, v.pix_fmt = 160, 120, "yuv420p"
            v.options = {"preset": "ultrafast"}
        a = out.add_stream(codec, rate=RATE, layout="mono")
        n = 0
        for j in range(0, len(samples), 1152):
            block = np.ascontiguousarray(samples[j : j + 1152].reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, n, Fraction(1, RATE)
            n += block.shape[1]
            out.mux(a.encode(frame))
        out.mux(a.encode(None))
        if v is not None:
            grey = np.full((120, 160, 3), 90, np.uint8)
            for i in range(int(len(samples) / RATE * 10)):
                f = av.VideoFrame.from_ndarray(np.roll(grey + (i % 7), i, axis=1), format="rgb24")
                f.pts, f.time_base = i, Fraction(1, 10)
                out.mux(v.encode(f))
            out.mux(v.encode(None))


def write_speech_video(path: str | Path, sentences: list[str], gap: float = GAP_S) -> list[float]:
    """An mp4 (H.264 + AAC) whose sound track speaks the sentences; where each starts."""
    samples, starts = timeline(sentences, gap)
    _encode(Path(path), samples, "aac", video=True)
    return starts


if __name__ == "__main__":
    print(write_speech(sys.argv[1], sys.argv[2:]))
