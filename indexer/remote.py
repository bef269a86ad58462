"""What Ray workers run for `xmr index --ray` (indexer.cluster drives them; Ray is not imported
here): a file decoded into prepared segments (`decode_file`, a CPU task) and the segments of
many files encoded at once (`SegmentEncoder`, held by an actor with the models loaded).

A worker gets a `WorkerSetup` from the driver: the encoder's spec and the hash of the weights
the library was built with (a worker whose copy differs refuses: vectors of two models must
never mix), the image preprocessing and tokenizer objects themselves (so decode tasks prepare
exactly what a local run prepares, without loading weights), and the run's settings. The one
writer stays the driver: outcomes go back to it, and sounds leave here as CLAP's own vectors,
which the driver moves into the library's space through its bridge.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from indexer.decode import decode_segments, partial_hash
from indexer.embedders import ImageEmbedder, TextEmbedder, _batched
from indexer.facts import safe_facts
from indexer.kinds import Segment, sniff_kind
from indexer.kinds.base import read_failure
from indexer.readers import load_once  # per worker process: Ray reuses its workers
from retrieval.encoders import EncoderSpec
from retrieval.errors import DecodeError, EncoderMismatchError, ModelLoadError


@dataclass
class WorkerSetup:
    spec: EncoderSpec
    weights_sha256: str | None  # of the library's record: a worker's copy must match
    dim: int
    preprocess: Any  # the encoder's own picture transform (picklable torchvision objects)
    tokenizer: Any  # and tokenizer: decode tasks count tokens with it
    context_length: int
    image_size: int | None
    segment_max: float
    audio_model: str
    batch_size: int
    ocr_on: bool = True
    speech_model: str | None = None
    recorded_ocr: dict[str, Any] | None = None
    recorded_speech: dict[str, Any] | None = None
    device: str = "auto"


@dataclass
class Outcome:
    """One file, as it comes back to the driver: its segments (payloads dropped once encoded)
    with their vectors, or the reason it was skipped."""

    path: str
    kind: str | None = None
    phash: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    vectors: list[Any] = field(default_factory=list)  # None for a sound: the driver bridges its raw vector
    raw: list[Any] = field(default_factory=list)
    error: str | None = None
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)  # OCR/speech identities that read it


class WorkerContext:
    """The DecodeContext (indexer.kinds.base) of a decode task: what kinds ask while decoding."""

    wants_sound = True

    def __init__(self, setup: WorkerSetup) -> None:
        self.setup = setup
        self.image_size = setup.image_size
        self.context_length = setup.context_length
        self.segment_max = setup.segment_max
        self.engines: dict[str, dict[str, Any]] = {}

    def count_tokens(self, text: str) -> int:
        from retrieval.encoders.clip import count_tokens

        return count_tokens(self.setup.tokenizer, text)

    def clap(self) -> Any:
        from retrieval.encoders.clap import ClapFeatures

        try:
            return load_once(("clap", self.setup.audio_model), lambda: ClapFeatures(self.setup.audio_model))
        except ModelLoadError as e:
            raise DecodeError(f"no audio model: {e}") from None

    def audio_format(self) -> tuple[int, int]:
        clap = self.clap()
        return clap.sampling_rate, clap.window_samples

    def prepare(self, seg: Segment) -> Segment:
        if seg.embedder == "image":
            return replace(seg, payload=self.setup.preprocess(seg.payload))
        if seg.embedder == "audio":
            return replace(seg, payload=self.clap().features(seg.payload))
        return seg

    def _reader(self, what: str, recorded: dict[str, Any] | None, make: Callable[[], Any]) -> Any:
        """A reader whose engine matches the library's record (else none: its words are left
        out, as a local run leaves them out), noted in the outcome for the driver to record."""
        try:
            reader = make()
        except ModelLoadError:
            return None
        ident = reader.identity()
        if recorded is not None and recorded != ident:
            return None
        self.engines[what] = ident
        return reader

    def ocr(self) -> Any:
        if not self.setup.ocr_on:
            return None
        from indexer.ocr import DEFAULT_LANG, Reader

        return self._reader("ocr", self.setup.recorded_ocr, lambda: load_once(("ocr", DEFAULT_LANG), Reader))

    def speech(self) -> Any:
        model = self.setup.speech_model
        if model is None:
            return None
        from indexer.speech import Transcriber

        return self._reader("speech", self.setup.recorded_speech,
                            lambda: load_once(("speech", model, "cpu"), lambda: Transcriber(model, "cpu")))


def decode_file(path: str, size: int, data: bytes | None, setup: WorkerSetup) -> Outcome:
    """A file -> its prepared segments; any failure is the outcome's `error` (never raised).
    With `data` (the driver shipped the bytes) the file is decoded from a private copy."""
    if data is None:
        return _decode_at(path, path, size, setup)
    suffix = os.path.splitext(path)[1][:16]
    fd, tmp = tempfile.mkstemp(prefix="xmr-shipped-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return _decode_at(path, tmp, size, setup)
    finally:
        os.unlink(tmp)


def _decode_at(path: str, local: str, size: int, setup: WorkerSetup) -> Outcome:
    out = Outcome(path)
    ctx = WorkerContext(setup)
    try:
        try:
            kind = sniff_kind(local)
            phash = partial_hash(local, size) if kind is not None else ""
        except OSError as e:
            raise read_failure(e) from None
        except DecodeError:
            raise
        except Exception as e:  # a kind's refine() opening a strange file
            raise DecodeError(f"{type(e).__name__}: {e}") from None
        if kind is None:
            return out  # not a media file: nothing, like a local run
        out.kind, out.phash, out.facts = kind.name, phash, safe_facts(kind, local)
        out.segments = list(decode_segments(kind, local, ctx, ctx.prepare))
    except DecodeError as e:
        out.error, out.segments = str(e), []
    out.engines = ctx.engines
    return out


class SegmentEncoder:
    """The models of one worker (an actor): files' prepared segments -> vectors, grouped by
    embedder across the files of a batch, `batch_size` per model call."""

    def __init__(self, setup: WorkerSetup) -> None:
        from retrieval.encoders import load_encoder

        self.setup = setup
        self.encoder = load_encoder(setup.spec, setup.device)
        ident = self.encoder.identity()
        if (ident.get("weights_sha256"), ident.get("dim")) != (setup.weights_sha256, setup.dim):
            raise EncoderMismatchError(
                f"the weights of {setup.spec.describe()} on this Ray worker differ from the ones the library "
                f"was built with (weights_sha256 {ident.get('weights_sha256')} != {setup.weights_sha256}); "
                "give every node the same model files")
        if not setup.batch_size:  # per device: a GPU takes larger batches than a CPU
            self.setup = replace(setup, batch_size=int(getattr(self.encoder, "batch_size", 32)))
        self.embedders = {"image": ImageEmbedder(self.encoder), "text": TextEmbedder(self.encoder)}
        self._clap: Any = None

    def clap(self) -> Any:
        if self._clap is None:
            from retrieval.encoders.clap import ClapAudioEncoder

            self._clap = ClapAudioEncoder(self.setup.audio_model, self.setup.device)
        return self._clap

    def encode(self, outcomes: list[Outcome]) -> list[Outcome]:
        groups: dict[str, list[tuple[Outcome, int]]] = {}
        for o in outcomes:
            o.vectors, o.raw = [None] * len(o.segments), [None] * len(o.segments)
            for i, seg in enumerate(o.segments):
                groups.setdefault(seg.embedder, []).append((o, i))
        for name, members in groups.items():
            inputs = [o.segments[i].payload for o, i in members]
            if name == "audio":  # CLAP's own vectors: the driver's bridge maps them
                raw = _batched(self.clap().encode_audio, inputs, self.setup.batch_size)
                for j, (o, i) in enumerate(members):
                    o.raw[i] = raw[j]
                continue
            if name not in self.embedders:
                raise DecodeError(f"no embedder {name!r}")
            vecs = self.embedders[name].embed(inputs, self.setup.batch_size).vectors
            for j, (o, i) in enumerate(members):
                o.vectors[i] = vecs[j]
        for o in outcomes:
            o.segments = [replace(seg, payload=None) for seg in o.segments]
        return outcomes

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Ray Data's map_batches: a column of pickled outcomes in, the same encoded out."""
        done = self.encode([pickle.loads(b) for b in batch["outcome"]])
        return {"outcome": [pickle.dumps(o, protocol=5) for o in done]}
