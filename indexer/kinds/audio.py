"""Sounds: files -> fixed windows of mono float32 samples at the audio model's rate.

soundfile (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...) decodes; soxr resamples.
Other formats (m4a, aac, wma, ...) go through ffmpeg when it is installed. Files are read in
blocks and resampled as a stream, so a long recording never sits in memory whole.

Windows are deterministic (never CLAP's random crop): [0, W), [W, 2W), ... and, when the
remainder is at least MIN_TAIL_S long, one last full window that ends at the end of the file.
A file shorter than one window is a single window, padded later the way CLAP expects.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from indexer.kinds.base import DecodeContext, MediaKind, Segment
from retrieval.errors import DecodeError

if TYPE_CHECKING:
    import numpy as np

AUDIO_EXTS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".caf", ".w64"}
)
FFMPEG_EXTS = frozenset({".m4a", ".aac", ".wma", ".alac", ".amr", ".ac3", ".mka", ".weba"})
MIN_TAIL_S = 1.0
MAX_AUDIO_S = 4 * 3600  # beyond this only the beginning is indexed
_BLOCK_S = 10


@dataclass(frozen=True)
class Window:
    index: int
    start: float  # seconds
    end: float
    samples: np.ndarray  # mono float32 at the target rate, at most one window long


def ffmpeg_path() -> str | None:
    return shutil.which("ffmpeg")


def sniff_audio(head: bytes, ext: str) -> bool:
    """Audio by magic bytes; MP3 frame sync alone is too weak a sign without the extension."""
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"RF64"):
        return True
    if head[:4] in (b"fLaC", b"OggS") or head[:3] == b"ID3":
        return True
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return True
    return ext == ".mp3" and len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0


def _soundfile_blocks(path: str) -> tuple[int, Iterator[np.ndarray]]:
    import soundfile as sf

    try:
        f = sf.SoundFile(path)
    except FileNotFoundError:
        raise DecodeError("file vanished") from None
    except PermissionError:
        raise DecodeError("permission denied") from None
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise _Unsupported(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    if f.samplerate <= 0 or f.channels <= 0:
        f.close()
        raise DecodeError("audio header is broken (no sample rate or channels)")

    def blocks() -> Iterator[np.ndarray]:
        with f:
            while True:
                try:
                    data = f.read(f.samplerate * _BLOCK_S, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as e:
                    raise DecodeError(f"broken audio ({e})") from None
                if not len(data):
                    return
                yield data.mean(axis=1)

    return f.samplerate, blocks()


def _ffmpeg_blocks(path: str, rate: int) -> tuple[int, Iterator[np.ndarray]]:
    exe = ffmpeg_path()
    if exe is None:
        raise DecodeError("ffmpeg is not installed")
    cmd = [exe, "-nostdin", "-v", "error", "-i", path, "-vn", "-f", "f32le", "-ac", "1", "-ar", str(rate), "pipe:1"]

    import numpy as np

    def blocks() -> Iterator[np.ndarray]:
        # ffmpeg's messages go to a file, not a pipe: a pipe nobody reads while stdout is read
        # fills at 64 KiB and stops ffmpeg (and us, waiting for its samples) for good.
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
            if proc.stdout is None:  # pragma: no cover - PIPE always gives one
                raise DecodeError("ffmpeg gave no output stream")
            got = False
            try:
                while chunk := proc.stdout.read(rate * _BLOCK_S * 4):
                    usable = len(chunk) - len(chunk) % 4
                    got = True
                    yield np.frombuffer(chunk[:usable], dtype="<f4").astype(np.float32)
            finally:
                proc.stdout.close()
                code = proc.wait()
                log.seek(max(0, log.seek(0, os.SEEK_END) - 4096))
                err = log.read().decode(errors="replace").strip()
        if code != 0 and not got:
            raise DecodeError(f"ffmpeg cannot decode it ({err.splitlines()[-1] if err else f'exit {code}'})")

    return rate, blocks()


class _Unsupported(Exception):
    """soundfile cannot open the file; ffmpeg may."""


def _resampled(rate_in: int, rate: int, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    import numpy as np

    if rate_in == rate:
        yield from blocks
        return
    import soxr

    stream = soxr.ResampleStream(rate_in, rate, 1, dtype="float32", quality="HQ")
    for b in blocks:
        out = stream.resample_chunk(np.ascontiguousarray(b, dtype=np.float32))
        if len(out):
            yield out
    tail = stream.resample_chunk(np.zeros(0, np.float32), last=True)
    if len(tail):
        yield tail


def audio_windows(path: str, rate: int, window: int) -> Iterator[Window]:
    """Decode `path` into windows of `window` samples at `rate` Hz (see the module doc)."""
    import numpy as np

    ext = os.path.splitext(path)[1].lower()
    try:
        rate_in, blocks = _soundfile_blocks(path)
    except _Unsupported as e:
        if ffmpeg_path() is None:
            hint = "; install ffmpeg to index this format" if ext in FFMPEG_EXTS else ""
            raise DecodeError(f"not a sound file soundfile can read ({e}){hint}") from None
        rate_in, blocks = _ffmpeg_blocks(path, rate)
    limit = MAX_AUDIO_S * rate
    buf = np.zeros(0, np.float32)
    last_full: np.ndarray | None = None
    emitted = 0  # samples covered by full windows
    index = 0
    for chunk in _resampled(rate_in, rate, blocks):
        chunk = np.nan_to_num(chunk, nan=0.0, posinf=0.0, neginf=0.0)
        buf = np.concatenate([buf, chunk]) if len(buf) else chunk
        while len(buf) >= window and emitted < limit:
            last_full = buf[:window].copy()
            yield Window(index, emitted / rate, (emitted + window) / rate, last_full)
            buf = buf[window:]
            emitted += window
            index += 1
        if emitted >= limit:
            return
    tail = len(buf)
    if index == 0:
        if tail == 0:
            raise DecodeError("no audio samples")
        yield Window(0, 0.0, tail / rate, buf.copy())
    elif tail >= MIN_TAIL_S * rate and last_full is not None:
        # A full-length last window ending at the end: no padding, a little overlap.
        samples = np.concatenate([last_full[tail:], buf])
        end = emitted + tail
        yield Window(index, (end - window) / rate, end / rate, samples)


class AudioKind(MediaKind):
    """Each window is an item with its `start`/`end` seconds, embedded by CLAP and bridged
    into the CLIP space (the "audio" embedder)."""

    name = "audio"
    label = "Sounds"
    noun = "sound"
    extensions = AUDIO_EXTS | FFMPEG_EXTS
    location = ("chunk", "start", "end")
    view = "player"

    def sniff(self, head: bytes, ext: str) -> bool:
        return sniff_audio(head, ext)

    def decode(self, path: str, ctx: DecodeContext) -> Iterator[Segment]:
        rate, window = ctx.audio_format()
        for w in audio_windows(path, rate, window):
            yield Segment(w.samples, embedder="audio", chunk=w.index, start=w.start, end=w.end)
