"""The one decode context: what kinds ask while decoding (indexer.kinds.base.DecodeContext) and
how a decoded segment becomes model input, the same in a decode thread, a decode process and a
Ray task. It is built from a `DecodeSetup`, which holds no weights and pickles: the models'
picture transforms and the main model's tokenizer, the run's settings and its readers' settings.

A segment's payload is prepared for every model that embeds it: a picture becomes a dict of
model inputs by model key (the main model and each added model may want another size or
normalisation), so a file is decoded once for all of a library's models.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from indexer.kinds import Segment
from indexer.kinds.image import EncodedJpeg
from indexer.readers import ReaderSettings, Readers, load_once
from retrieval.errors import DecodeError, ModelLoadError

MAIN = "main"  # the key of the library's main model among a run's models
FACES = "faces"  # the face model's (indexer.stages.face_embed)


@dataclass(frozen=True)
class ModelInputs:
    """What decoding needs of one model: no weights, only how its inputs are made."""

    key: str  # MAIN, or an added model's key (indexer.extra_models)
    embeds: tuple[str, ...]  # the embedder names it embeds: "image", "text", "audio"
    preprocess: Any = None  # its picture transform (a picklable torchvision transform)
    image_size: int | None = None  # the side it looks at
    # Looks at its own larger copy (faces), decoded apart at `image_size` on the long side, so the
    # other models' inputs (and vectors) are the same whether it runs or not.
    own_copy: bool = False


@dataclass(frozen=True)
class DecodeSetup:
    models: tuple[ModelInputs, ...]  # the main model first
    tokenizer: Any  # the main model's: it cuts text into items
    context_length: int
    segment_max: float
    audio_model: str | None  # CLAP's id; None: sounds are not wanted
    readers: ReaderSettings = field(default_factory=ReaderSettings)
    device_jpeg: bool = False  # JPEGs go to the model's device as bytes (decoded there: nvjpeg)

    def for_models(self, keys: set[str]) -> DecodeSetup:
        """The same decoding for a subset of the models (re-encoding for added models only)."""
        return replace(self, models=tuple(m for m in self.models if m.key in keys))


def model_inputs(key: str, encoder: Any, embeds: tuple[str, ...]) -> ModelInputs:
    """A loaded encoder's ModelInputs."""
    return ModelInputs(key, embeds, getattr(encoder, "preprocess", None), getattr(encoder, "input_size", None))


def setup_for_run(encoder: Any, added: dict[str, Any], audio_model: str | None, segment_max: float,
                  readers: ReaderSettings) -> DecodeSetup:
    """The decoding of an index run: the main `encoder` (pictures, text, sounds with CLAP
    `audio_model`) and the `added` models by key (pictures and text)."""
    return DecodeSetup(models=(model_inputs(MAIN, encoder, ("image", "text", "audio")),
                               *(model_inputs(k, e, ("image", "text")) for k, e in added.items())),
                       tokenizer=getattr(encoder, "tokenizer", None), context_length=encoder.context_length,
                       segment_max=segment_max, audio_model=audio_model, readers=readers,
                       device_jpeg=device_jpeg_wanted(str(getattr(encoder, "device", "cpu"))))


def device_jpeg_wanted(device: str) -> bool:
    """Decode JPEGs on the model's device? On CUDA, unless XMR_DEVICE_JPEG=0; XMR_DEVICE_JPEG=1
    also on a CPU (torchvision's decoder: what the tests and benchmarks compare with PIL's)."""
    import os

    forced = os.environ.get("XMR_DEVICE_JPEG")
    if forced in ("0", "1"):
        return forced == "1"
    return device.startswith("cuda")



class DecodeContext:
    """indexer.kinds.base.DecodeContext for a DecodeSetup, plus `prepare(segment)`. Thread-safe.
    `readers`: the run's own (a decode thread shares the driver's); else one is made here."""

    def __init__(self, setup: DecodeSetup, readers: Readers | None = None) -> None:
        self.setup = setup
        self.readers = readers if readers is not None else Readers(setup.readers)
        sizes = [m.image_size for m in setup.models if m.image_size and "image" in m.embeds and not m.own_copy]
        self.image_size = max(sizes) if sizes else None  # decoded no smaller than the largest model needs
        detail = [m.image_size for m in setup.models if m.image_size and m.own_copy]
        self.detail_side = max(detail) if detail else None  # a larger copy, on its long side
        self.context_length = setup.context_length
        self.segment_max = setup.segment_max
        self.wants_sound = setup.audio_model is not None
        self.device_jpeg = setup.device_jpeg
        self._pictures = [m for m in setup.models if "image" in m.embeds]
        self._local = threading.local()

    def count_tokens(self, text: str) -> int:
        from retrieval.encoders.clip import count_tokens

        # each decode thread counts with its own copy: a Hugging Face fast tokenizer keeps its
        # truncation and padding settings in shared state, and the model encodes with the same
        # object at the same time (a batch then fails "Unable to create tensor", now and then)
        tok = getattr(self._local, "tokenizer", None)
        if tok is None:
            tok = self._local.tokenizer = copy.deepcopy(self.setup.tokenizer)
        return count_tokens(tok, text)

    def clap(self) -> Any:
        """CLAP's feature extractor (no weights), once per process."""
        model = self.setup.audio_model
        if model is None:
            raise DecodeError("sounds are embedded by the library's main model only")
        from retrieval.encoders.clap import ClapFeatures

        try:
            return load_once(("clap", model), lambda: ClapFeatures(model))
        except ModelLoadError as e:  # told in full once for the run; each sound is skipped briefly
            self.readers.unavailable("sound", f"no audio model: {e}")
            raise DecodeError("no audio model (see above)") from None

    def audio_format(self) -> tuple[int, int]:
        clap = self.clap()
        return int(clap.sampling_rate), int(clap.window_samples)

    def ocr(self) -> Any:
        return self.readers.ocr()

    def speech(self) -> Any:
        return self.readers.speech()

    def prepare(self, seg: Segment) -> Segment:
        """What a kind decoded -> every model's input (pictures: {model key: tensor})."""
        if seg.embedder == "image":
            if isinstance(seg.payload, EncodedJpeg):  # decoded by the embedder, on the model's device
                return seg
            return replace(seg, detail=None, payload={
                m.key: m.preprocess(seg.detail if m.own_copy and seg.detail is not None else seg.payload)
                for m in self._pictures})
        if seg.embedder == "audio":
            return replace(seg, payload=self.clap().features(seg.payload))
        return seg
