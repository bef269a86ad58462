"""What Ray workers run for `xmr index --ray` (indexer.cluster drives them; Ray is not imported
here): the DECODE and EMBED stages of a local run, scheduled on a cluster.

A decode task runs `decode_whole` with the run's own DecodeSetup (indexer.stages.context: the
picture transform and tokenizer themselves, no weights, and the readers' settings), so it
prepares exactly what a local run prepares. An encoder actor (`SegmentEncoder`) loads the main
model, refuses weights whose hash differs from the library's (vectors of two models must never
mix) and embeds the segments of many files at once through the same registry and batching as a
local run. Sounds leave as CLAP's own vectors, which the driver moves into the library's space
through its bridge; the one writer stays the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from indexer.stages.context import MAIN, DecodeContext, DecodeSetup
from indexer.stages.decode import Decoded, decode_whole
from indexer.stages.embed import Batches, Pending, registry_for
from retrieval.encoders import EncoderSpec
from retrieval.errors import EncoderMismatchError


@dataclass
class WorkerSetup:
    decode: DecodeSetup
    spec: EncoderSpec
    weights_sha256: str | None  # of the library's record: a worker's copy must match
    dim: int
    batch_size: int  # 0: the encoder's own for its device
    device: str = "auto"


def decode_file(path: str, size: int, data: bytes | None, setup: WorkerSetup) -> Decoded:
    """A decode task: one file -> its Decoded (never raises for the file's own failures)."""
    return decode_whole(path, size, DecodeContext(setup.decode), data)


class SegmentEncoder:
    """The main model of one worker (an actor): files' prepared segments -> vectors."""

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
        self._clap: Any = None
        registry = registry_for(self.encoder, {}, self.clap, None)  # sounds: CLAP's own vectors
        self.pending = Pending(registry, Batches(setup.batch_size or int(getattr(self.encoder, "batch_size", 32))))

    def clap(self) -> Any:
        if self._clap is None:
            from retrieval.encoders.clap import ClapAudioEncoder

            self._clap = ClapAudioEncoder(self.setup.decode.audio_model or "", self.setup.device)
        return self._clap

    def encode(self, files: list[Decoded]) -> list[Decoded]:
        from indexer.stages.embed import FileWork

        works = []
        for d in files:
            w = FileWork(None, None, d.phash, vectors={MAIN: []})  # type: ignore[arg-type]
            for seg in d.segments:
                self.pending.add(w, w.add(seg))
            works.append(w)
        self.pending.embed()
        for d, w in zip(files, works):  # Pending dropped the payloads: what goes back is small
            d.vectors, d.raw, d.segments = {MAIN: w.vectors[MAIN]}, w.raw, w.segments
        return files

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Ray Data's map_batches: a column of pickled outcomes in, the same encoded out."""
        import pickle

        done = self.encode([pickle.loads(b) for b in batch["outcome"]])
        return {"outcome": [pickle.dumps(o, protocol=5) for o in done]}
