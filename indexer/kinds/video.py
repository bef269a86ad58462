"""Videos: mp4, mov, m4v, mkv, webm, avi, 3gp (by content), decoded by PyAV.

A video becomes two tracks of items, both modality "video" and both with `start`/`end` seconds:
- what is seen: one item per segment (indexer.kinds.scenes: cut at scene changes, 1 s to
  `--segment-max` long), embedded by the picture encoder from its middle frame;
- what is heard: the sound track cut into the sound model's windows and bridged into the same
  space, exactly like a sound file (the "audio" embedder). A library without a sound model
  indexes what is seen only.

Decoding streams: frames are sampled SAMPLE_HZ times a second and only a few samples of the open
segment are kept, so memory does not grow with the video's length; every frame's 64x36 copy
(read from its planes, cheap) places a cut on the exact frame. Where the decoder can (MJPEG,
JPEG 2000: FFmpeg's `lowres`), frames are decoded at the smallest scale that covers the model's
input; H.264 and most codecs cannot, so a sampled frame that may stand for its segment is
scaled by FFmpeg's scaler straight to the model's input size (short side); the rest are decoded
and dropped. Timestamps come from each frame (variable frame rates keep true times); the
display rotation is applied. An mp4 holding only sound is a sound file (`refine`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from indexer.kinds.audio import AudioKind, Windower, Window
from indexer.kinds.avfile import Resampled, decoded, first_streams, open_media
from indexer.kinds.base import DecodeContext, MediaKind, Segment
from indexer.kinds.scenes import SAMPLE_HZ, SceneCutter, Shot
from retrieval.errors import DecodeError

VIDEO_EXTS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".3gp", ".3g2", ".mpg", ".mpeg", ".ts", ".ogv", ".wmv", ".flv"})
MAX_VIDEO_S = 4 * 3600  # beyond this only the beginning is indexed
MAX_PIXELS = 8192 * 8192  # larger frames are refused before any is decoded
SEGMENT_MAX_S = 10.0
SEGMENT_MIN_S = 1.0
_SMALL = (64, 36)
TEXT_TEST_SIDE = 224  # short side of the frame the cheap text test looks at, at least
log = logging.getLogger("xmr")
_told_no_sound: list[bool] = []  # the missing sound model is told once a process


def sniff_video(head: bytes) -> bool:
    """ISO media (mp4/mov/3gp), Matroska/WebM, AVI, MPEG-PS, FLV, ASF by their magic bytes."""
    if head[4:8] == b"ftyp":
        return head[8:12] not in (b"M4A ", b"M4B ", b"M4P ", b"avif", b"avis", b"heic", b"heix", b"mif1")
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free") and len(head) >= 8:
        return True  # QuickTime files without an ftyp box
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, WebM
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    return head[:4] in (b"\x00\x00\x01\xba", b"FLV\x01") or head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


def _model_frame(frame: Any, size: int, long_side: bool = False) -> Any:
    """A decoded frame as an upright RGB PIL image whose short side (or long side) is `size`,
    never upscaled."""
    w, h = frame.width, frame.height
    scale = min(1.0, size / max(1, max(w, h) if long_side else min(w, h)))
    image = frame.reformat(width=max(1, round(w * scale)), height=max(1, round(h * scale)), format="rgb24", interpolation="AREA").to_image()
    rotation = getattr(frame, "rotation", 0) or 0
    if rotation % 360:
        image = image.rotate(rotation, expand=True)  # counter-clockwise, as the display matrix says
    return image


def _small(frame: Any) -> Any:
    """A 64x36 colour copy for cut detection. For the usual 4:2:0 frames it is read straight from
    the decoder's planes (a point sample of Y, U and V: 0.1 ms instead of a scaler pass over the
    whole frame, which costs as much as decoding one at 1080p)."""
    import numpy as np

    if frame.format.name in ("yuv420p", "yuvj420p") and frame.width >= _SMALL[0] * 2 and frame.height >= _SMALL[1] * 2:
        out = []
        for i, (w, h) in enumerate(((frame.width, frame.height), ((frame.width + 1) // 2, (frame.height + 1) // 2))):
            for plane in ([frame.planes[0]] if i == 0 else [frame.planes[1], frame.planes[2]]):
                grid = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
                rows = np.linspace(0, h - 1, _SMALL[1]).astype(np.intp)
                cols = np.linspace(0, w - 1, _SMALL[0]).astype(np.intp)
                out.append(grid[np.ix_(rows, cols)])
        return np.stack(out, axis=-1)
    return frame.reformat(width=_SMALL[0], height=_SMALL[1], format="rgb24").to_ndarray()


# Decoders that can decode at 1/2, 1/4 or 1/8 of the size (FFmpeg's `lowres`): the DCT codecs.
_LOWRES_CODECS = frozenset({"mjpeg", "jpeg2000"})


def _decode_small(stream: Any, size: int) -> None:
    """Where the decoder can, decode at the smallest scale that still covers the model's input
    (H.264, HEVC, VP9, AV1 cannot: their frames are scaled after decoding)."""
    ctx = stream.codec_context
    if ctx.name not in _LOWRES_CODECS or not ctx.width or not ctx.height:
        return
    k = 0
    while k < 3 and min(ctx.width, ctx.height) >> (k + 1) >= size:
        k += 1
    if k:
        ctx.options = {**ctx.options, "lowres": str(k)}


def _start_offset(container: Any) -> float:
    """Seconds before a container's first timestamp: hits' times count from the video's start."""
    return float(container.start_time) / 1e6 if container.start_time else 0.0


def _check_size(stream: Any) -> None:
    w, h = stream.codec_context.width or 0, stream.codec_context.height or 0
    if w * h > MAX_PIXELS:
        raise DecodeError(f"video frames too large to decode safely ({w}x{h})")


@dataclass(frozen=True)
class _Framed:
    """A sampled frame at the model's size and, where it may hold print, larger for OCR; and
    at `detail_side` for a model that looks closer (faces)."""

    picture: Any
    larger: Any = None
    detail: Any = None


def _framer(size: int, ocr: Any, detail_side: int | None = None) -> Callable[[Any], _Framed]:
    """How a sample becomes a picture: with `ocr`, a frame that passes the cheap text test is
    also kept at the size OCR reads (slides, signs, captions); the others cost the test only."""
    def framed(frame: Any) -> _Framed:
        picture = _model_frame(frame, size)
        detail = _model_frame(frame, detail_side, long_side=True) if detail_side else None
        if ocr is None:
            return _Framed(picture, detail=detail)
        from indexer.ocr import OCR_SIDE, likely_text

        # the text test needs a frame of CLIP's usual size at least (a tiny model's is too small)
        tested = picture if min(picture.size) >= TEXT_TEST_SIDE else _model_frame(frame, TEXT_TEST_SIDE)
        return _Framed(picture, _model_frame(frame, OCR_SIDE, long_side=True) if likely_text(tested) else None, detail)

    return framed


def _seen_and_read(ocr: Any) -> Callable[[Shot], Segment]:
    def seen(shot: Shot) -> Segment:
        framed: _Framed = shot.frame
        words = ocr.read(framed.larger) if ocr is not None and framed.larger is not None else None
        return Segment(framed.picture, embedder="image", chunk=shot.index, start=shot.start, end=shot.end,
                       snippet=words.text if words else None, confidence=words.confidence if words else None,
                       detail=framed.detail)

    return seen


def video_segments(path: str, size: int, segment_max: float = SEGMENT_MAX_S,
                   audio_format: Callable[[], tuple[int, int] | None] | None = None, ocr: Any = None,
                   detail_side: int | None = None) -> Iterator[Segment]:
    """The segments of the video at `path` in order of completion: "image" segments (a frame
    at `size`; with an `ocr` reader, the words seen on it) and, when it has sound and
    `audio_format()` gives (rate, window samples), "audio" windows of its sound."""
    framed, _seen = _framer(size, ocr, detail_side), _seen_and_read(ocr)
    with open_media(path) as container:
        vstream, astream = first_streams(container)
        if vstream is None:
            raise DecodeError("no video stream in it")
        _check_size(vstream)
        _decode_small(vstream, size)
        audio = audio_format() if audio_format is not None and astream is not None else None
        vstream.thread_type = "AUTO"  # frame threads: decoding is the cost of a video
        offset = _start_offset(container)
        cutter = SceneCutter(SEGMENT_MIN_S, segment_max)
        resampler = Resampled(audio[0]) if audio and astream is not None else None
        windower = Windower(audio[0], audio[1], MAX_VIDEO_S) if resampler and audio else None
        bad, next_sample, last_t, frames = [0], 0.0, 0.0, 0
        between: list[tuple[float, Any]] = []
        streams = [vstream] + ([astream] if resampler else [])
        for packet in container.demux(*streams):
            if packet.stream is vstream:
                for frame in decoded(vstream, packet, bad):
                    if frame.time is None:
                        continue
                    t = max(0.0, frame.time - offset)
                    if t > MAX_VIDEO_S:
                        break
                    frames += 1
                    step = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0
                    last_t = max(last_t, t + step)
                    if frame.width * frame.height > MAX_PIXELS:
                        raise DecodeError(f"video frames too large to decode safely ({frame.width}x{frame.height})")
                    small = _small(frame)
                    if t + 1e-6 < next_sample:
                        between.append((t, small))  # where a cut between two samples is placed
                        continue
                    next_sample = t + 1.0 / SAMPLE_HZ
                    for shot in cutter.add(t, small, lambda f=frame: framed(f), between):
                        yield _seen(shot)
                    between = []
                if last_t > MAX_VIDEO_S:
                    break
            elif resampler is not None and windower is not None:
                for frame in decoded(astream, packet, bad):
                    for block in resampler.feed(frame):
                        yield from map(_heard, windower.feed(block))
        if frames == 0:
            raise DecodeError("no video frame could be decoded")
        yield from map(_seen, cutter.finish(last_t))
        if resampler is not None and windower is not None:
            for block in resampler.feed(None):
                yield from map(_heard, windower.feed(block))
            try:
                yield from map(_heard, windower.finish())
            except DecodeError:  # a sound track without samples: what is seen stays
                pass


def frame_at(path: str, at: float, size: int) -> Any:
    """The picture at `at` seconds (the first frame at or after it; the last one before the end
    for a time past it), short side `size`: a poster for a moment of the video."""
    with open_media(path) as container:
        stream, _ = first_streams(container)
        if stream is None:
            raise DecodeError("no video stream in it")
        _check_size(stream)
        offset = _start_offset(container)
        if at > 0 and stream.time_base:
            try:  # to the keyframe before `at`, then decode forward
                container.seek(int((at + offset) / stream.time_base), stream=stream, backward=True)
            except Exception:  # noqa: BLE001 - a file that cannot seek is read from the start
                container.seek(0)
        last, bad = None, [0]
        for packet in container.demux(stream):
            for frame in decoded(stream, packet, bad):
                last = frame
                if frame.time is not None and frame.time - offset + 1e-3 >= at:
                    return _model_frame(frame, size)
        if last is None:
            raise DecodeError("no video frame could be decoded")
        return _model_frame(last, size)


def _heard(w: Window) -> Segment:
    return Segment(w.samples, embedder="audio", chunk=w.index, start=w.start, end=w.end)


class VideoKind(MediaKind):
    name = "video"
    label = "Videos"
    noun = "video"
    extensions = VIDEO_EXTS
    location = ("chunk", "start", "end", "snippet", "confidence")
    readers = ("ocr", "speech", "sound")
    view = "video"

    def sniff(self, head: bytes, ext: str) -> bool:
        return sniff_video(head)

    def refine(self, path: str) -> MediaKind:
        try:
            with open_media(path) as container:
                video, audio = first_streams(container)
        except DecodeError:
            return self  # decoding will say what is wrong with it
        return AudioKind() if video is None and audio is not None else self  # sniff_kind gives the registered one

    def facts(self, path: str) -> dict[str, Any]:
        from indexer.kinds.avfile import media_facts

        return media_facts(path)

    def hit_fields(self, item: Any) -> dict[str, Any]:
        # Which track matched: "sound" for the sound track's windows, "speech" for what is said
        # in it, "picture" for shots.
        track = {"audio": "sound", "text": "speech"}.get(item.embedder, "picture")
        return {**super().hit_fields(item), "track": track}

    def thumbnail(self, path: str, size: int, at: float | None = None) -> Any:
        return frame_at(path, at or 0.0, size)

    def decode(self, path: str, ctx: DecodeContext) -> Iterator[Segment]:
        def audio_format() -> tuple[int, int] | None:
            try:
                return ctx.audio_format()
            except DecodeError as e:  # no sound model: what is seen is still worth indexing
                if not _told_no_sound:
                    _told_no_sound.append(True)
                    log.warning("videos are indexed by what is seen only, not what is heard: %s", e)
                return None

        yield from video_segments(path, ctx.image_size or 224, ctx.segment_max,
                                  audio_format if getattr(ctx, "wants_sound", True) else None, ctx.ocr(),
                                  getattr(ctx, "detail_side", None))
        transcriber = ctx.speech()
        if transcriber is not None:
            from indexer.speech import speech_segments

            yield from speech_segments(transcriber, path)
