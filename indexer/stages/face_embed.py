"""The face model as one more embedder of pictures (indexer.stages.embed's registry, key FACES):
a picture's input is a copy no longer than faces.MAX_SIDE (its ModelInputs), and what comes
back is not one vector but the picture's faces (0..n: boxes, descriptors, thumbnails), which
the writer keeps in the catalog (indexer.face_catalog). dlib releases the GIL while it looks, so
a batch's pictures are looked at by a pool of threads, each with its own models: one pool per
process, kept, so the models load once per thread, not once per run (0.25 s each).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from indexer.face_gate import FaceGate
from indexer.faces import MAX_SIDE, FaceCopy, FaceModel
from indexer.kinds.image import EncodedJpeg, load_image
from indexer.readers import load_once
from indexer.stages.context import FACES, ModelInputs
from indexer.stages.embed import Batches, Embedded
from retrieval.errors import DecodeError

log = logging.getLogger("xmr")


def face_inputs(own_copy: bool = True) -> ModelInputs:
    """How pictures are made ready for the face model: a copy of their own, MAX_SIDE on the
    long side (the other models' inputs stay as they are without faces); without `own_copy`
    (the face model alone: indexer.face_sync) the pictures are decoded for it."""
    return ModelInputs(FACES, ("image",), FaceCopy(MAX_SIDE), MAX_SIDE, own_copy=own_copy)


class FaceEmbedder:
    """With a `gate` (indexer.face_gate), a picture is looked at only when the gate says so, from
    the main model's vector of it (the registry gives it: `wants_main`); one it passes over
    counts as looked at, without faces."""

    wants_main = True

    def __init__(self, workers: int | None = None, gate: FaceGate | None = None) -> None:
        self.model: FaceModel = load_once(("faces",), FaceModel)  # per thread inside: loaded once each
        self.gate = gate
        workers = workers or os.cpu_count() or 2
        self._pool: ThreadPoolExecutor = load_once(("faces-pool", str(workers)), lambda: ThreadPoolExecutor(
            workers, thread_name_prefix="xmr-faces"))

    def embed(self, inputs: Sequence[Any], batches: Batches | None, main: Sequence[Any] | None = None) -> Embedded:
        if self.gate is None or main is None:
            return Embedded(None, found=list(self._pool.map(self.find, inputs)))
        decisions = self.gate.decide(main)
        todo = [i for i, (look, _, _) in enumerate(decisions) if look]
        found: list[list[Any] | None] = [[] for _ in inputs]
        for i, faces in zip(todo, self._pool.map(self.find, [inputs[i] for i in todo])):
            found[i] = faces
        for (_, audit, score), faces in zip(decisions, found):
            if audit and faces is not None:
                self.gate.learn(score, bool(faces))
        return Embedded(None, found=found)

    def find(self, x: Any) -> list[Any] | None:
        """One prepared picture's faces; None when the picture itself could not be had."""
        pixels = x[FACES] if isinstance(x, dict) else x
        try:
            if isinstance(pixels, EncodedJpeg):  # the model decodes it on the GPU; faces look at the CPU's copy
                pixels = FaceCopy(MAX_SIDE)(load_image(pixels.path, long_side=MAX_SIDE))
            if isinstance(pixels, DecodeError) or pixels is None:
                return None
            return self.model.find(pixels)
        except DecodeError:
            return None
        except RuntimeError as e:  # dlib's own failure on an odd picture: no faces, said in the log
            log.info("faces: %s", e)
            return []
