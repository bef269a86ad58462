"""Cutting a video into segments at scene changes, from cheap signals only.

Frames are sampled SAMPLE_HZ times a second. Each sample is shrunk to a 64x36 colour picture
(grey alone misses a cut between two shapes of equal brightness); a cut is where the mean
absolute difference between two consecutive samples is large both in
absolute terms (CUT_LEVEL of full scale) and against the recent run of differences (CUT_RATIO
times their mean), so a fast pan or a flicker in a steady scene does not cut, a hard cut does.
A cut is then placed at the first frame between the two samples that looks more like the later
one (every frame's small copy is kept until the next sample): boundaries fall on the cut's
frame, also with variable frame rates. Segments last at most `max_s` (a long shot is split) and at least
`min_s`: a cut closer to the segment's start is ignored, unless that segment began at such a
split (a split is arbitrary, a cut is not: the piece before the cut becomes a short segment). A last segment shorter than `min_s` is
merged into the one before when that stays within `max_s`.

The representative frame of a segment is its picture nearest the middle (pictures are made of
one sample a second and of each segment's first): the segment is one shot, so its frames look
alike; the middle is the frame farthest from fades and transitions at the edges, and one frame
costs a third of averaging three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

if TYPE_CHECKING:
    import numpy as np

SAMPLE_HZ = 4.0
PICTURE_EVERY = 4  # of the samples, every 4th (1 a second) and each segment's first become pictures
CUT_LEVEL = 0.08  # mean |difference| of RGB values, 0..1
CUT_RATIO = 3.0
_RECENT = 8


@dataclass
class Shot:
    """One segment: [start, end) seconds and the picture that stands for it."""

    index: int
    start: float
    end: float
    frame: Any  # what the caller sampled (a PIL image at the model's size)


class SceneCutter:
    """Feed samples in time order (`add`), then `finish`; both yield the segments completed."""

    def __init__(self, min_s: float = 1.0, max_s: float = 10.0) -> None:
        self.min_s, self.max_s = min_s, max(max_s, min_s)
        self._samples: list[tuple[float, Any]] = []  # the open segment's (time, frame)
        self._start: float | None = None
        self._prev: np.ndarray | None = None
        self._diffs: list[float] = []
        self._forced = False  # the open segment began where a long shot was split, not at a cut
        self._held: Shot | None = None  # the last closed segment, kept in case a short tail joins it
        self._index = 0
        self._count = 0

    def add(self, t: float, small: np.ndarray, picture: Callable[[], Any],
            between: Sequence[tuple[float, np.ndarray]] = ()) -> Iterator[Shot]:
        """A sample at `t` seconds: `small` its 64x36 colour copy (uint8, any 3 channels);
        `picture()` makes the picture that may stand for its segment (called only for the
        samples that can: scaling a full frame costs more than decoding one). `between`: the
        (time, small copy) of the frames since the last sample, where a cut is placed exactly."""
        import numpy as np

        grey = small.astype(np.float32) / 255.0
        cut, at = False, t
        if self._prev is not None and self._prev.shape == grey.shape:
            d = float(np.abs(grey - self._prev).mean())
            recent = float(np.mean(self._diffs)) if self._diffs else 0.0
            cut = d > CUT_LEVEL and d > CUT_RATIO * recent
            self._diffs = (self._diffs + [d])[-_RECENT:]
            if cut:
                self._diffs = []  # a new shot: its own motion level
                at = _first_like(grey, self._prev, between, t)
        self._prev = grey
        if self._start is None:
            self._start = t
        elif (cut and (at - self._start >= self.min_s or self._forced)) or t - self._start >= self.max_s:
            yield from self._close(at)
            self._start, self._forced = at, not cut
        keep = not self._samples or self._count % PICTURE_EVERY == 0
        self._count += 1
        self._samples.append((t, picture() if keep else None))

    def finish(self, end: float) -> Iterator[Shot]:
        """The video ended at `end` seconds: close what is open."""
        if self._start is not None and self._samples:
            tail_start = self._start
            end = max(end, self._samples[-1][0])
            held = self._held
            if held is not None and end - tail_start < self.min_s and end - held.start <= self.max_s:
                held.end = end  # a short tail joins the segment before
                self._samples = []
            else:
                yield from self._close(end)
        if self._held is not None:
            yield self._held
            self._held = None

    def _close(self, end: float) -> Iterator[Shot]:
        if self._start is None or not self._samples:
            return
        middle = (self._start + end) / 2
        _, frame = min((s for s in self._samples if s[1] is not None), key=lambda s: abs(s[0] - middle))
        if self._held is not None:
            yield self._held
        self._held = Shot(self._index, self._start, end, frame)
        self._index += 1
        self._samples = []


def _first_like(after: np.ndarray, before: np.ndarray, between: Sequence[tuple[float, np.ndarray]], t: float) -> float:
    """When the cut between two samples happened: the first frame between them that looks more
    like the later sample than the earlier one (`t`, the later sample's time, when none does)."""
    import numpy as np

    for when, small in between:
        f = small.astype(np.float32) / 255.0
        if f.shape == after.shape and np.abs(f - after).mean() < np.abs(f - before).mean():
            return when
    return t
