"""A query: texts, pictures, sounds and negative texts, combined into one unit vector."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from retrieval.errors import DecodeError, UsageError

if TYPE_CHECKING:  # numpy is imported when a query is embedded: `xmr search` via a server never needs it
    import numpy as np

    from retrieval.encoders.base import Encoder

MAX_QUERY_CHARS = 10_000


@dataclass
class Query:
    """What to look for.

    The vector is  (1 - w) * mean(texts) + w * mean(media) - n * mean(negatives), normalised,
    where media are the pictures, sounds and videos (each one a unit vector, sounds bridged into the
    CLIP space), w = `media_weight` (default 0.5 when both texts and media are given; otherwise
    the side that is present counts fully) and n = `negative_weight`.
    """

    texts: Sequence[str] = field(default_factory=list)
    images: Sequence[str] = field(default_factory=list)
    negatives: Sequence[str] = field(default_factory=list)
    media_weight: float | None = None
    negative_weight: float = 0.5
    audios: Sequence[str] = field(default_factory=list)
    videos: Sequence[str] = field(default_factory=list)  # each counts as the mean of its shots
    # Ready unit vectors that count as media (e.g. the vector of a library item: "more like this").
    vectors: Sequence[np.ndarray] = field(default_factory=list)
    # How to name a file in error messages (uploads are temp files with a user-given name).
    names: dict[str, str] = field(default_factory=dict)

    def _label(self, flag: str, path: str) -> str:
        """How a query file is named in messages: "image 'cat.png'", in-process as through the
        server (which sees uploads by their file names)."""
        return self.names.get(path) or f"{flag.lstrip('-')} {os.path.basename(path)!r}"

    def validate(self) -> None:
        texts = [t for t in self.texts if t.strip()]
        if len(texts) != len(self.texts) or any(not t.strip() for t in self.negatives):
            raise UsageError("empty text in query")
        if not texts and not self.images and not self.audios and not self.videos and not len(self.vectors):
            raise UsageError("nothing to search for: give a text query, --text, --image, --audio or --video")
        for t in [*self.texts, *self.negatives]:
            if len(t) > MAX_QUERY_CHARS:
                raise UsageError(f"query text longer than {MAX_QUERY_CHARS} characters")
        if self.media_weight is not None:
            if not (0.0 <= self.media_weight <= 1.0):
                raise UsageError(f"--weight must be between 0 and 1, got {self.media_weight}")
            if not (self.texts and (self.images or self.audios or self.videos or len(self.vectors))):
                raise UsageError("--weight sets the picture/sound share of a text + picture/sound query; give both")
        if not (0.0 <= self.negative_weight <= 1.0):
            raise UsageError(f"negative weight must be between 0 and 1, got {self.negative_weight}")
        for flag, paths in (("--image", self.images), ("--audio", self.audios), ("--video", self.videos)):
            for p in paths:
                if not os.path.isfile(p):
                    raise UsageError(f"{self._label(flag, p)}: no such file")

    def embed(
        self, encoder: Encoder | Callable[[], Encoder], audio: Callable[[str], np.ndarray] | None = None
    ) -> np.ndarray:
        """The (d,) float32 unit query vector.

        `encoder` may be a zero-argument function returning it, so a sound-only query never
        loads the CLIP model; `audio` turns a sound file into a unit vector in the same space.
        """
        import numpy as np

        from indexer.kinds.image import load_image

        self.validate()
        enc: Callable[[], Encoder] = encoder if callable(encoder) else (lambda: encoder)  # type: ignore[assignment]
        parts: list[tuple[float, np.ndarray]] = []
        w = self.media_weight if self.media_weight is not None else 0.5
        media: list[np.ndarray] = []
        if self.images:
            tensors = []
            for p in self.images:
                try:
                    tensors.append(enc().preprocess_image(load_image(p)))
                except DecodeError as e:
                    raise UsageError(f"{self._label('--image', p)}: {e}") from None
            media.extend(enc().encode_images(tensors))
        if self.audios:
            if audio is None:
                raise UsageError("this search cannot take sounds")
            for p in self.audios:
                try:
                    media.append(audio(p))
                except DecodeError as e:
                    raise UsageError(f"{self._label('--audio', p)}: {e}") from None
        for p in self.videos:
            try:
                media.append(video_vector(enc(), p))
            except DecodeError as e:
                raise UsageError(f"{self._label('--video', p)}: {e}") from None
        media.extend(np.asarray(v, np.float32) for v in self.vectors)
        def text_vectors(texts: Sequence[str]) -> np.ndarray:
            e = enc()
            return getattr(e, "encode_query", e.encode_text)(list(texts))

        if self.texts:
            parts.append((1.0 - w if media else 1.0, text_vectors(self.texts).mean(0)))
        if media:
            parts.append((w if self.texts else 1.0, np.mean(media, axis=0)))
        if self.negatives:
            parts.append((-self.negative_weight, text_vectors(self.negatives).mean(0)))
        v = sum(weight * vec for weight, vec in parts)
        norm = float(np.linalg.norm(v))
        if not np.isfinite(norm) or norm < 1e-6:
            raise UsageError("the query parts cancel out; change the weights or drop a --not term")
        return np.ascontiguousarray(v / norm, dtype=np.float32)


def video_vector(encoder: Encoder, path: str) -> np.ndarray:
    """A video as one unit vector: the mean of its shots' vectors (what is seen; its sound is
    left out, so a video query never needs the sound model)."""
    import numpy as np

    from indexer.kinds.video import video_segments

    size = getattr(encoder, "input_size", None) or 224
    try:
        tensors = [encoder.preprocess_image(seg.payload) for seg in video_segments(path, size)]
    except DecodeError:
        raise
    except Exception as e:  # the decoder's own failures, worded like the indexer's
        raise DecodeError(f"{type(e).__name__}: {e}") from None
    if not tensors:
        raise DecodeError("no shot in it")
    v = encoder.encode_images(tensors).mean(0)
    return v / max(float(np.linalg.norm(v)), 1e-12)
