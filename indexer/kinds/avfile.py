"""Opening media containers with PyAV (FFmpeg's libraries, shipped inside the `av` wheel: no
ffmpeg program needed), and their sound as a stream of mono float32 blocks.

Shared by sounds (formats libsndfile cannot read: m4a, aac, wma, ...) and videos.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterator

from retrieval.errors import DecodeError

if TYPE_CHECKING:
    import numpy as np

# Packets that fail to decode are skipped; a file where nothing but failures come is broken.
MAX_BAD_PACKETS = 200


def _reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text.splitlines()[0][:200]


@contextmanager
def open_media(path: str) -> Iterator[Any]:
    """The file as a PyAV input container; DecodeError("not a media file ...") when FFmpeg
    cannot open it. The container is closed at the end of the block."""
    import av

    try:
        container = av.open(path, mode="r", metadata_errors="ignore")
    except FileNotFoundError:
        raise DecodeError("file vanished") from None
    except PermissionError:
        raise DecodeError("permission denied") from None
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise DecodeError(f"not a media file FFmpeg can read ({_reason(e)})") from None
    try:
        yield container
    finally:
        container.close()


def first_streams(container: Any) -> tuple[Any, Any]:
    """(video stream, audio stream) of a container, each None when absent. Cover art (a
    picture attached to a song) is not a video."""
    import av

    video = next((s for s in container.streams.video
                  if not s.disposition & av.stream.Disposition.attached_pic), None)
    audio = next(iter(container.streams.audio), None)
    return video, audio


def decoded(stream: Any, packet: Any, bad: list[int]) -> list[Any]:
    """The frames of one packet; a packet that fails to decode is counted in `bad[0]` and
    skipped (a damaged stretch of a file must not lose the rest of it)."""
    import av

    try:
        return list(stream.decode(packet))
    except (av.FFmpegError, ValueError) as e:
        bad[0] += 1
        if bad[0] > MAX_BAD_PACKETS:
            raise DecodeError(f"too many undecodable packets ({_reason(e)})") from None
        return []


class Resampled:
    """Audio frames -> mono float32 blocks at `rate` Hz (FFmpeg's resampler)."""

    def __init__(self, rate: int) -> None:
        import av

        self.rate = rate
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)

    def feed(self, frame: Any | None) -> list[np.ndarray]:
        """Blocks for one decoded frame; None flushes what the resampler holds."""
        import av
        import numpy as np

        try:
            out = self._resampler.resample(frame)
        except (av.FFmpegError, ValueError):  # a frame whose layout changed mid-stream: drop it
            return []
        return [np.ascontiguousarray(f.to_ndarray().reshape(-1), dtype=np.float32) for f in out]


def audio_blocks(path: str, rate: int) -> Iterator[np.ndarray]:
    """The first audio stream of any file FFmpeg reads, as mono float32 blocks at `rate` Hz."""
    with open_media(path) as container:
        _, stream = first_streams(container)
        if stream is None:
            raise DecodeError("no audio stream in it")
        resampler, bad, got = Resampled(rate), [0], False
        for packet in container.demux(stream):
            for frame in decoded(stream, packet, bad):
                for block in resampler.feed(frame):
                    got = True
                    yield block
        for block in resampler.feed(None):
            got = True
            yield block
        if not got:
            raise DecodeError("no audio samples could be decoded")


def media_facts(path: str) -> dict[str, Any]:
    """Duration (and a video's frame size and recording date) from the container's header."""
    out: dict[str, Any] = {}
    with open_media(path) as container:
        if container.duration:
            out["duration"] = float(container.duration) / 1_000_000
        video, audio = first_streams(container)
        if video is not None and video.codec_context.width:
            out["width"], out["height"] = int(video.codec_context.width), int(video.codec_context.height)
        created = (container.metadata or {}).get("creation_time")
        if isinstance(created, str):
            try:
                out["taken_at"] = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
            except ValueError:
                pass
        if "duration" not in out:
            stream = video or audio
            if stream is not None and stream.duration and stream.time_base:
                out["duration"] = float(stream.duration * stream.time_base)
    return out
