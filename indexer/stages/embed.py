"""EMBED: prepared segments -> unit vectors, batched per embedder, for every model of the run.

One registry names, for each embedder a segment can ask for ("image", "text", "audio"), the
models that embed it: the main model embeds all three (sounds through CLAP and the library's
audio bridge), each added model pictures and text. So a file decoded once gets the vectors of
every model in the same pass. On a GPU, a batch that runs out of memory is halved and retried
(`Batches`), and the smaller size is kept for the rest of the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from indexer.kinds import MediaKind, Segment
from indexer.kinds.image import EncodedJpeg
from indexer.scan import MediaFile
from indexer.stages.context import FACES, MAIN
from retrieval.errors import DecodeError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("xmr")


def is_out_of_memory(e: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError (or the RuntimeError older builds raise), without importing torch."""
    return type(e).__name__ == "OutOfMemoryError" or (isinstance(e, RuntimeError) and "out of memory" in str(e))


class Batches:
    """Runs a model over inputs `size` at a time; out of GPU memory halves `size` and goes on."""

    def __init__(self, size: int, on_halve: Callable[[], None] | None = None) -> None:
        self.size = size
        self.on_halve = on_halve or _empty_cuda_cache

    def run(self, fn: Callable[[list[Any]], np.ndarray], xs: Sequence[Any]) -> np.ndarray:
        import numpy as np

        out, i = [], 0
        while i < len(xs):
            part = list(xs[i:i + self.size])
            try:
                out.append(fn(part))
            except Exception as e:
                if not is_out_of_memory(e) or self.size == 1:
                    raise
                self.size = max(1, self.size // 2)
                log.info("out of GPU memory: batches of %d from now on", self.size)
                self.on_halve()
                continue
            i += len(part)
        if out and not isinstance(out[0], np.ndarray):  # left on the GPU: one wait, one copy back
            import torch

            return np.ascontiguousarray(torch.cat(out).float().cpu().numpy(), dtype=np.float32)
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _empty_cuda_cache() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class Embedded:
    vectors: np.ndarray | None  # (n, d) float32 unit rows in the model's space; None: to bridge
    raw: np.ndarray | None = None  # (n, d') the encoder's own vectors, kept in the catalog (sounds)
    failed: dict[int, str] = field(default_factory=dict)  # inputs that could not be read, and why
    found: list[Any] | None = None  # an embedder of many per input (faces): what each input holds


class BatchEmbedder(Protocol):
    def embed(self, inputs: Sequence[Any], batches: Batches) -> Embedded:
        """Prepared inputs -> vectors, through `batches`."""


class PictureEmbedder:
    """A model's image tower; a prepared picture holds every model's input, by model key, or is
    a JPEG still to decode on the model's device (indexer.stages.device_jpeg)."""

    def __init__(self, encoder: Any, key: str) -> None:
        self.encoder, self.key = encoder, key
        self._jpegs: Any = None

    def embed(self, inputs: Sequence[Any], batches: Batches) -> Embedded:
        import numpy as np

        ready = [x[self.key] if isinstance(x, dict) else x for x in inputs]
        jpegs = [i for i, x in enumerate(ready) if isinstance(x, EncodedJpeg)]
        if jpegs:
            for i, x in zip(jpegs, self._device_jpegs().inputs([ready[i] for i in jpegs], self.encoder.preprocess,
                                                               getattr(self.encoder, "input_size", None))):
                ready[i] = x
        failed = {i: str(x) for i, x in enumerate(ready) if isinstance(x, DecodeError)}
        good = [x for x in ready if not isinstance(x, DecodeError)]
        got = batches.run(self._encode(), good) if good else None
        if not failed or got is None:
            return Embedded(got, failed=failed)
        vectors = np.zeros((len(ready), got.shape[1]), np.float32)
        vectors[[i for i in range(len(ready)) if i not in failed]] = got
        return Embedded(vectors, failed=failed)

    def _encode(self) -> Callable[[list[Any]], Any]:
        """On a GPU the vectors stay there until the last batch (nothing waits for the GPU between
        batches, so the next one is prepared and copied while this one runs); elsewhere numpy."""
        on_gpu = str(getattr(self.encoder, "device", "cpu")).startswith("cuda")
        return self.encoder.encode_images_on_device if on_gpu else self.encoder.encode_images

    def _device_jpegs(self) -> Any:
        if self._jpegs is None:
            from indexer.stages.device_jpeg import DeviceJpegs

            self._jpegs = DeviceJpegs(self.encoder.device)
        return self._jpegs


class TextEmbedder:
    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder

    def embed(self, inputs: Sequence[Any], batches: Batches) -> Embedded:
        return Embedded(batches.run(self.encoder.encode_text, inputs))


class SoundEmbedder:
    """CLAP's audio tower (`clap()` loads it on first use); with `bridge_for(raw)` the vectors are
    moved into the library's space, without it (a Ray worker) only CLAP's own are returned."""

    def __init__(self, clap: Callable[[], Any], bridge_for: Callable[[np.ndarray], Any] | None) -> None:
        self.clap, self.bridge_for = clap, bridge_for

    def embed(self, inputs: Sequence[Any], batches: Batches) -> Embedded:
        raw = batches.run(self.clap().encode_audio, inputs)
        return Embedded(self.bridge_for(raw).map_audio(raw) if self.bridge_for is not None else None, raw)


class Registry:
    """Embedder name -> the (model key, embedder) pairs that embed it."""

    def __init__(self) -> None:
        self._by_name: dict[str, list[tuple[str, BatchEmbedder]]] = {}

    def register(self, name: str, key: str, embedder: BatchEmbedder) -> None:
        self._by_name.setdefault(name, []).append((key, embedder))

    def targets(self, name: str) -> list[tuple[str, BatchEmbedder]]:
        try:
            return self._by_name[name]
        except KeyError:
            raise DecodeError(f"no embedder {name!r}; available: {', '.join(self._by_name)}") from None

    @property
    def keys(self) -> list[str]:
        """The models of the run, the main one first."""
        seen: list[str] = []
        for pairs in self._by_name.values():
            seen += [k for k, _ in pairs if k not in seen]
        return sorted(seen, key=lambda k: k != MAIN)


def registry_for(encoder: Any, added: dict[str, Any], clap: Callable[[], Any] | None,
                 bridge_for: Callable[[np.ndarray], Any] | None, faces: BatchEmbedder | None = None) -> Registry:
    """The main `encoder` (pictures, text; sounds with `clap`), the `added` models by key and
    the face model (pictures' faces, under key FACES: indexer.stages.face_embed)."""
    reg = Registry()
    reg.register("image", MAIN, PictureEmbedder(encoder, MAIN))
    reg.register("text", MAIN, TextEmbedder(encoder))
    if clap is not None:
        reg.register("audio", MAIN, SoundEmbedder(clap, bridge_for))
    for key, enc in added.items():
        reg.register("image", key, PictureEmbedder(enc, key))
        reg.register("text", key, TextEmbedder(enc))
    if faces is not None:
        reg.register("image", FACES, faces)
    return reg


@dataclass
class FileWork:
    """A file on its way through EMBED to WRITE: its segments (payloads dropped once embedded)
    and, per model key, one vector per segment (the face model's: the segment's faces)."""

    mf: MediaFile
    kind: MediaKind
    phash: str
    facts: dict[str, Any] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    vectors: dict[str, list[Any]] = field(default_factory=dict)
    raw: list[Any] = field(default_factory=list)  # the embedder's own vector, where it keeps one
    error: str | None = None  # why a segment could not be embedded: the file is skipped

    def add(self, seg: Segment) -> int:
        self.segments.append(seg)
        for vs in self.vectors.values():
            vs.append(None)
        self.raw.append(None)
        return len(self.segments) - 1


class Pending:
    """Segments decoded but not embedded yet, across files; `embed()` runs them per embedder."""

    def __init__(self, registry: Registry, batches: Batches) -> None:
        self.registry, self.batches = registry, batches
        self.items: list[tuple[FileWork, int]] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, work: FileWork, i: int) -> None:
        self.items.append((work, i))

    def drop(self, work: FileWork) -> None:
        """A file that failed half-way: its segments are not embedded."""
        self.items = [(w, i) for w, i in self.items if w is not work]

    def embed(self) -> None:
        groups: dict[str, list[tuple[FileWork, int]]] = {}
        for w, i in self.items:
            groups.setdefault(w.segments[i].embedder, []).append((w, i))
        self.items = []
        for name, members in groups.items():
            inputs = [w.segments[i].payload for w, i in members]
            for key, embedder in self.registry.targets(name):
                if getattr(embedder, "wants_main", False):  # after the main model: its vectors of these
                    out = embedder.embed(inputs, self.batches, [w.vectors[MAIN][i] for w, i in members])  # type: ignore[call-arg]
                else:
                    out = embedder.embed(inputs, self.batches)
                for j, (w, i) in enumerate(members):
                    w.vectors[key][i] = out.vectors[j] if out.vectors is not None else (
                        out.found[j] if out.found is not None else None)
                    if out.raw is not None:
                        w.raw[i] = out.raw[j]
                    if j in out.failed:
                        w.error = out.failed[j]
            for w, i in members:  # memory follows the batch, not the file
                w.segments[i] = replace(w.segments[i], payload=None)
