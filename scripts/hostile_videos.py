"""The videos of the hostile corpus (scripts/hostile_corpus.py): each made here, tiny, with what
indexing must make of it ("indexed", modality) or a part of its skip reason ("a|b": either)."""

from __future__ import annotations

import random
import struct
from fractions import Fraction
from pathlib import Path

from scripts.synthetic import CONCEPTS
from scripts.synthetic_video import Scene, make_video

NOT_MEDIA = "not a media file|no video frame"
EXPECTED_VIDEOS: dict[str, tuple[str, str]] = {
    "good.mp4": ("indexed", "video"),
    "truncated-no-moov.mp4": ("skipped", NOT_MEDIA),
    "empty.mp4": ("skipped", NOT_MEDIA),
    "sound-only.mp4": ("indexed", "audio"),
    "damaged-frames.mp4": ("indexed", "video"),  # what decodes is indexed
    "claims-16384x16384.avi": ("skipped", "too large|no video frame"),
    "sparse-5h.mkv": ("indexed", "video"),  # up to the time cap
    "text-named.mp4": ("skipped", NOT_MEDIA),
    "no-duration.mkv": ("indexed", "video"),
}


def make_good_video(folder: Path) -> None:
    make_video(folder / "good.mp4", [Scene(CONCEPTS[0], 2.0, 440.0), Scene(CONCEPTS[5], 2.0, 880.0)])


def _frames(out, codec: str, times_ms: list[int], size: int = 64, fmt: str = "yuv420p") -> None:
    import av
    import numpy as np

    v = out.add_stream(codec, rate=10)
    v.width = v.height = size
    v.pix_fmt = fmt
    v.time_base = Fraction(1, 1000)
    for i, t in enumerate(times_ms):
        frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), (i * 37) % 256, np.uint8), format="rgb24")
        frame = frame.reformat(format=fmt)
        frame.pts, frame.time_base = t, Fraction(1, 1000)
        out.mux(v.encode(frame))
    out.mux(v.encode(None))


def make_hostile_videos(folder: Path) -> dict[str, tuple[str, str]]:
    import av

    make_good_video(folder)
    good = (folder / "good.mp4").read_bytes()
    # mp4 writes its index (moov) last: the first half has none.
    (folder / "truncated-no-moov.mp4").write_bytes(good[: len(good) // 2])
    (folder / "empty.mp4").write_bytes(b"")
    make_video(folder / "sound-only.mp4", [Scene(CONCEPTS[2], 3.0, 660.0)], audio=True)
    with av.open(str(folder / "sound-only.mp4")) as src, av.open(str(folder / "tmp.mp4"), "w") as out:
        stream = out.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux(src.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    (folder / "tmp.mp4").replace(folder / "sound-only.mp4")
    rng = random.Random(3)
    damaged = bytearray(good)
    for _ in range(40):  # garbage over the frames' data, the header and index intact
        at = rng.randrange(len(good) // 5, len(good) * 3 // 5)
        damaged[at : at + 64] = bytes(rng.randrange(256) for _ in range(64))
    (folder / "damaged-frames.mp4").write_bytes(bytes(damaged))
    with av.open(str(folder / "claims-16384x16384.avi"), "w") as out:
        _frames(out, "mjpeg", [0, 200, 400], size=16, fmt="yuvj420p")
    avi = bytearray((folder / "claims-16384x16384.avi").read_bytes())
    at = avi.find(b"\xff\xc0")
    while at >= 0:  # each JPEG frame's header (SOF0) now claims 16384 x 16384
        avi[at + 5 : at + 9] = struct.pack(">HH", 16384, 16384)
        at = avi.find(b"\xff\xc0", at + 2)
    (folder / "claims-16384x16384.avi").write_bytes(bytes(avi))
    with av.open(str(folder / "sparse-5h.mkv"), "w") as out:  # two frames, then five hours later two more
        _frames(out, "libx264", [0, 1000, 5 * 3600 * 1000, 5 * 3600 * 1000 + 1000])
    (folder / "text-named.mp4").write_text("a note that calls itself a video", encoding="utf-8")
    with av.open(str(folder / "no-duration.mkv"), "w", format="matroska", options={"live": "1"}) as out:
        _frames(out, "libx264", list(range(0, 3000, 100)))
    return dict(EXPECTED_VIDEOS)
