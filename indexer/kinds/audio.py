"""Sounds: files -> fixed windows of mono float32 samples at the audio model's rate.

soundfile (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...) decodes; soxr resamples.
Other formats (m4a, aac, wma, ...) go through FFmpeg's libraries (PyAV, indexer.kinds.avfile). Files are read in
blocks and resampled as a stream, so a long recording never sits in memory whole.

Windows are deterministic (never CLAP's random crop): [0, W), [W, 2W), ... and, when the
remainder is at least MIN_TAIL_S long, one last full window that ends at the end of the file.
A file shorter than one window is a single window, padded later the way CLAP expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from indexer.kinds.base import DecodeContext, MediaKind, Segment
from retrieval.errors import DecodeError

if TYPE_CHECKING:
    import numpy as np

AUDIO_EXTS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".caf", ".w64"}
)
AV_EXTS = frozenset({".m4a", ".aac", ".wma", ".alac", ".amr", ".ac3", ".mka", ".weba"})
MIN_TAIL_S = 1.0
MAX_AUDIO_S = 4 * 3600  # beyond this only the beginning is indexed
_BLOCK_S = 10


@dataclass(frozen=True)
class Window:
    index: int
    start: float  # seconds
    end: float
    samples: np.ndarray  # mono float32 at the target rate, at most one window long


def sniff_audio(head: bytes, ext: str) -> bool:
    """Audio by magic bytes; MP3 frame sync alone is too weak a sign without the extension."""
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"RF64"):
        return True
    if head[:4] in (b"fLaC", b"OggS") or head[:3] == b"ID3":
        return True
    if head[4:8] == b"ftyp" and head[8:12] in (b"M4A ", b"M4B ", b"M4P "):  # MPEG-4 sound only
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


class _Unsupported(Exception):
    """soundfile cannot open the file; FFmpeg (PyAV) may."""


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
    try:
        rate_in, blocks = _soundfile_blocks(path)
    except _Unsupported as e:
        yield from _pyav_windows(path, rate, window, str(e))
        return
    yield from windows(_resampled(rate_in, rate, blocks), rate, window)


def _pyav_windows(path: str, rate: int, window: int, soundfile_said: str) -> Iterator[Window]:
    from indexer.kinds.avfile import audio_blocks

    blocks = audio_blocks(path, rate)
    try:
        first = next(blocks)
    except DecodeError as e:
        raise DecodeError(f"not a sound file soundfile or FFmpeg can read ({soundfile_said}; {e})") from None
    except StopIteration:  # pragma: no cover - audio_blocks raises when it has nothing
        raise DecodeError("no audio samples") from None

    def all_blocks() -> Iterator[np.ndarray]:
        yield first
        yield from blocks

    yield from windows(all_blocks(), rate, window)


def windows(blocks: Iterator[np.ndarray], rate: int, window: int, limit_s: float = MAX_AUDIO_S) -> Iterator[Window]:
    """Mono blocks at `rate` Hz -> the windows described in the module doc, as they fill."""
    cutter = Windower(rate, window, limit_s)
    for block in blocks:
        yield from cutter.feed(block)
        if cutter.full:
            break
    yield from cutter.finish()


class Windower:
    """Cuts a stream of mono blocks into windows (push side: `feed` each block, then `finish`)."""

    def __init__(self, rate: int, window: int, limit_s: float = MAX_AUDIO_S) -> None:
        import numpy as np

        self.rate, self.window, self.limit = rate, window, int(limit_s * rate)
        self._buf = np.zeros(0, np.float32)
        self._last_full: np.ndarray | None = None
        self._emitted = 0  # samples covered by full windows
        self._index = 0

    @property
    def full(self) -> bool:
        return self._emitted >= self.limit

    def feed(self, block: np.ndarray) -> list[Window]:
        import numpy as np

        if self.full:
            return []
        block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
        buf = np.concatenate([self._buf, block]) if len(self._buf) else block
        out = []
        while len(buf) >= self.window and not self.full:
            self._last_full = buf[: self.window].copy()
            out.append(Window(self._index, self._emitted / self.rate, (self._emitted + self.window) / self.rate, self._last_full))
            buf = buf[self.window :]
            self._emitted += self.window
            self._index += 1
        self._buf = buf
        return out

    def finish(self) -> list[Window]:
        """The last window; DecodeError when there were no samples at all."""
        import numpy as np

        tail = len(self._buf)
        if self.full:
            return []
        if self._index == 0:
            if tail == 0:
                raise DecodeError("no audio samples")
            return [Window(0, 0.0, tail / self.rate, self._buf.copy())]
        if tail >= MIN_TAIL_S * self.rate and self._last_full is not None:
            # A full-length last window ending at the end: no padding, a little overlap.
            samples = np.concatenate([self._last_full[tail:], self._buf])
            end = self._emitted + tail
            return [Window(self._index, (end - self.window) / self.rate, end / self.rate, samples)]
        return []


class AudioKind(MediaKind):
    """Each window is an item with its `start`/`end` seconds, embedded by CLAP and bridged
    into the CLIP space (the "audio" embedder)."""

    name = "audio"
    label = "Sounds"
    noun = "sound"
    extensions = AUDIO_EXTS | AV_EXTS
    location = ("chunk", "start", "end", "snippet", "confidence")  # a transcript's words, if it is one
    readers = ("speech", "sound")
    view = "player"

    def sniff(self, head: bytes, ext: str) -> bool:
        return sniff_audio(head, ext)

    def decode(self, path: str, ctx: DecodeContext) -> Iterator[Segment]:
        try:
            rate, window = ctx.audio_format()
        except DecodeError as e:  # no sound model: what is said needs Whisper only
            unheard: DecodeError | None = e
        else:
            unheard = None
            for w in audio_windows(path, rate, window):
                yield Segment(w.samples, embedder="audio", chunk=w.index, start=w.start, end=w.end)
        transcriber = ctx.speech()
        said = 0
        if transcriber is not None:
            from indexer.speech import speech_segments

            for seg in speech_segments(transcriber, path):
                said += 1
                yield seg
        if unheard is not None and not said:
            raise unheard

    def facts(self, path: str) -> dict[str, Any]:
        from indexer.kinds.avfile import media_facts

        return media_facts(path)

    def hit_fields(self, item: Any) -> dict[str, Any]:
        # "speech" for a transcript's words, "sound" for a window heard by the sound model
        return {**super().hit_fields(item), "track": "speech" if item.embedder == "text" else "sound"}
