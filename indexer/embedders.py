"""The embedders a segment can name: how its payload is prepared (in decode threads) and turned
into unit vectors of the library's space (in batches, on the model's thread).

    "image"  the CLIP image tower                  payload: a PIL image
    "text"   the CLIP text tower                   payload: a passage that fits its context
    "audio"  CLAP's audio tower + the audio bridge  payload: mono samples, one window

The sound embedder also returns each window's own CLAP vector (`Embedded.raw`), which the
catalog keeps so that a refitted bridge can move the sounds without decoding them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from indexer.models import Models
from retrieval.encoders import Encoder
from retrieval.errors import DecodeError, XmrError

if TYPE_CHECKING:
    import numpy as np

    from retrieval.encoders.bridge import Bridge


@dataclass
class Embedded:
    vectors: np.ndarray  # (n, d) float32, unit rows, in the library's space
    raw: np.ndarray | None = None  # (n, d') the encoder's own vectors, kept in the catalog


class Embedder(Protocol):
    def prepare(self, payload: Any) -> Any:
        """What a kind decoded -> model input; thread-safe (runs in decode workers)."""

    def embed(self, inputs: Sequence[Any], batch_size: int) -> Embedded:
        """Prepared inputs -> vectors, `batch_size` per model call."""


def _batched(fn: Callable[[list[Any]], np.ndarray], xs: Sequence[Any], batch_size: int) -> np.ndarray:
    import numpy as np

    return np.concatenate([fn(list(xs[i : i + batch_size])) for i in range(0, len(xs), batch_size)])


class ImageEmbedder:
    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def prepare(self, payload: Any) -> Any:
        return self.encoder.preprocess_image(payload)

    def embed(self, inputs: Sequence[Any], batch_size: int) -> Embedded:
        return Embedded(_batched(self.encoder.encode_images, inputs, batch_size))


class TextEmbedder:
    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def prepare(self, payload: Any) -> Any:
        return payload

    def embed(self, inputs: Sequence[Any], batch_size: int) -> Embedded:
        return Embedded(_batched(self.encoder.encode_text, inputs, batch_size))


class SoundEmbedder:
    """CLAP, loaded by the first decode worker that meets a sound; a load failure is told in
    full once, then each further sound is skipped with a short reason. `bridge_for(raw)` gives
    the bridge for a batch (fitting the library's first one from it)."""

    def __init__(self, models: Models, bridge_for: Callable[[np.ndarray], Bridge]) -> None:
        self.models, self.bridge_for = models, bridge_for
        self._failed = False

    def clap(self) -> Any:
        try:
            return self.models.audio_encoder
        except XmrError as e:
            told, self._failed = self._failed, True
            raise DecodeError("no audio model (see above)" if told else f"no audio model: {e}") from None

    def prepare(self, payload: Any) -> Any:
        return self.clap().features(payload)

    def embed(self, inputs: Sequence[Any], batch_size: int) -> Embedded:
        raw = _batched(self.models.audio_encoder.encode_audio, inputs, batch_size)
        return Embedded(self.bridge_for(raw).map_audio(raw), raw)


class EncoderContext:
    """The picture and text encoder's part of a DecodeContext (indexer.kinds.base)."""

    encoder: Encoder
    wants_sound = True

    @property
    def image_size(self) -> int | None:
        return getattr(self.encoder, "input_size", None)

    @property
    def context_length(self) -> int:
        return self.encoder.context_length

    def count_tokens(self, text: str) -> int:
        return self.encoder.count_tokens(text)


class Embedders(EncoderContext):
    """The embedders of one index run, by name; also what kinds may ask while decoding
    (indexer.kinds.base.DecodeContext)."""

    def __init__(self, models: Models, bridge_for: Callable[[np.ndarray], Bridge], segment_max: float = 10.0,
                 readers: Any = None) -> None:
        self.encoder = models.encoder
        self.segment_max = segment_max
        self.readers = readers  # indexer.readers.Readers: OCR and speech, or None (neither)
        self.sound = SoundEmbedder(models, bridge_for)
        self._by_name: dict[str, Embedder] = {
            "image": ImageEmbedder(self.encoder),
            "text": TextEmbedder(self.encoder),
            "audio": self.sound,
        }

    def get(self, name: str) -> Embedder:
        try:
            return self._by_name[name]
        except KeyError:
            raise DecodeError(f"no embedder {name!r}; available: {', '.join(self._by_name)}") from None

    def ocr(self) -> Any:
        return self.readers.ocr() if self.readers is not None else None

    def speech(self) -> Any:
        return self.readers.speech() if self.readers is not None else None

    def audio_format(self) -> tuple[int, int]:
        clap = self.sound.clap()
        return int(clap.sampling_rate), int(clap.window_samples)
