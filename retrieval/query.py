"""A query: texts, images and negative texts, combined into one unit vector."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from retrieval.encoders.base import Encoder
from retrieval.errors import DecodeError, UsageError

MAX_QUERY_CHARS = 10_000


@dataclass
class Query:
    """What to look for.

    The vector is  (1 - w) * mean(texts) + w * mean(images) - n * mean(negatives), normalised,
    where w = `image_weight` (default 0.5 when both texts and images are given; otherwise the
    side that is present counts fully) and n = `negative_weight`. Each part is a unit vector.
    """

    texts: Sequence[str] = field(default_factory=list)
    images: Sequence[str] = field(default_factory=list)
    negatives: Sequence[str] = field(default_factory=list)
    image_weight: float | None = None
    negative_weight: float = 0.5

    def validate(self) -> None:
        texts = [t for t in self.texts if t.strip()]
        if len(texts) != len(self.texts) or any(not t.strip() for t in self.negatives):
            raise UsageError("empty text in query")
        if not texts and not self.images:
            raise UsageError("nothing to search for: give a text query, --text or --image")
        for t in [*self.texts, *self.negatives]:
            if len(t) > MAX_QUERY_CHARS:
                raise UsageError(f"query text longer than {MAX_QUERY_CHARS} characters")
        if self.image_weight is not None:
            if not (0.0 <= self.image_weight <= 1.0):
                raise UsageError(f"--weight must be between 0 and 1, got {self.image_weight}")
            if not (self.texts and self.images):
                raise UsageError("--weight sets the image share of a text + image query; give both")
        if not (0.0 <= self.negative_weight <= 1.0):
            raise UsageError(f"negative weight must be between 0 and 1, got {self.negative_weight}")
        for p in self.images:
            if not os.path.isfile(p):
                raise UsageError(f"--image {p}: no such file")

    def embed(self, encoder: Encoder) -> np.ndarray:
        """The (d,) float32 unit query vector."""
        from indexer.decode import load_image

        self.validate()
        parts: list[tuple[float, np.ndarray]] = []
        w = self.image_weight if self.image_weight is not None else 0.5
        if self.texts:
            parts.append((1.0 - w if self.images else 1.0, encoder.encode_text(list(self.texts)).mean(0)))
        if self.images:
            tensors = []
            for p in self.images:
                try:
                    tensors.append(encoder.preprocess_image(load_image(p)))
                except DecodeError as e:
                    raise UsageError(f"--image {p}: {e}") from None
            parts.append((w if self.texts else 1.0, encoder.encode_images(tensors).mean(0)))
        if self.negatives:
            parts.append((-self.negative_weight, encoder.encode_text(list(self.negatives)).mean(0)))
        v = sum(weight * vec for weight, vec in parts)
        norm = float(np.linalg.norm(v))
        if not np.isfinite(norm) or norm < 1e-6:
            raise UsageError("the query parts cancel out; change the weights or drop a --not term")
        return np.ascontiguousarray(v / norm, dtype=np.float32)
