"""What every encoder family provides, and how a library names the encoder it was built with."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"

IMAGE = "image"
TEXT = "text"


@dataclass(frozen=True)
class EncoderSpec:
    """What the user asked for: an open_clip model spec and pretrained tag/checkpoint.

    `model` is open_clip's own: a registry name (`ViT-B-32`), `hf-hub:ORG/REPO` or
    `local-dir:PATH`. `pretrained` is a tag (`laion2b_s34b_b79k`), a checkpoint file, or None
    (random weights: only useful for timing and plumbing).
    """

    model: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED
    family: str = "open_clip"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncoderSpec":
        return cls(model=data["model"], pretrained=data.get("pretrained"), family=data.get("family", "open_clip"))

    def describe(self) -> str:
        if self.pretrained and not self.model.startswith(("hf-hub:", "local-dir:")):
            return f"{self.model} ({self.pretrained})"
        return self.model


@runtime_checkable
class Encoder(Protocol):
    """An embedding model: every output row is float32, unit L2 norm, `dim` wide."""

    spec: EncoderSpec
    device: str
    dim: int
    modalities: frozenset[str]
    context_length: int

    def identity(self) -> dict[str, Any]:
        """What pins these weights (spec + content hash where weights are files)."""

    def encode_text(self, texts: Sequence[str]) -> np.ndarray: ...

    def preprocess_image(self, image: Any) -> Any:
        """PIL image -> model input; thread-safe, runs in decode workers."""

    def encode_images(self, batch: Sequence[Any]) -> np.ndarray:
        """Preprocessed images -> (n, dim) float32."""

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in the text encoder's context, special tokens included."""
