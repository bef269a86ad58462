"""Faces in a picture: dlib's HOG detector on a copy of bounded size, each face aligned by dlib's
5-point landmarks and described by dlib's ResNet (128-d; 99.38 % on LFW as published). The
models come from PyPI (`pip install 'xmr[faces]'`: dlib-bin and face_recognition_models); the
68-point landmark model in that package is never loaded (its training data forbids commercial
use). Descriptors are kept at unit length, like every vector of a library (dlib's own have a
length of about 1.39 and its threshold is 0.6): two of one person are usually under
SAME_PERSON apart (Euclidean), of two people over it.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval.errors import ModelLoadError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

MAX_SIDE = 1000  # faces are looked for on a copy no longer than this (a 12 MP photo: 0.1-0.2 s)
UPSAMPLE = 1  # HOG's window is 80 px: upsampled once, a face ~40 px across in that copy is found
THUMB_PX = 96  # the aligned crop kept as a face's thumbnail
# dlib's 0.6 for its raw descriptors, at unit length (measured on real photos here: one person's
# 0.02-0.32 apart, two people's 0.59-0.63)
SAME_PERSON = 0.43
DIM = 128
INSTALL = "faces need dlib and its models: pip install 'xmr[faces]' (dlib-bin and face_recognition_models)"


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # left, top, width, height as fractions of the picture
    descriptor: np.ndarray  # (DIM,) float32, unit length
    score: float  # the detector's confidence (higher: surer)
    thumbnail: Image.Image  # THUMB_PX square, aligned (eyes level)


def model_folder() -> Path:
    """Where face_recognition_models keeps its files (found without importing the package,
    whose __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(INSTALL)
    return Path(list(spec.submodule_search_locations)[0]) / "models"


@dataclass(frozen=True)
class FaceCopy:
    """A picture's copy no longer than `max_side`, as the face model's input (picklable: it is
    a model's preprocess, run in decode threads, processes and Ray tasks)."""

    max_side: int = MAX_SIDE

    def __call__(self, image: Image.Image) -> np.ndarray:
        import numpy as np
        from PIL import Image as PILImage

        scale = min(1.0, self.max_side / max(image.size))
        if scale < 1.0:
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 PILImage.Resampling.BILINEAR)
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))


class FaceModel:
    """Loaded on first use, once per thread that calls `find` (dlib releases the GIL while it
    works, and its detector and ResNet keep per-call buffers: not to be shared by threads)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _models(self) -> tuple[Any, Any, Any]:
        models = getattr(self._local, "models", None)
        if models is None:
            try:
                import dlib
            except ImportError:
                raise ModelLoadError(INSTALL) from None
            folder = model_folder()
            try:
                models = (dlib.get_frontal_face_detector(),
                          dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
                          dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat")))
            except RuntimeError as e:
                raise ModelLoadError(f"cannot load the face models in {folder}: {e}") from None
            self._local.models = models
        return models

    def find(self, image: Image.Image | np.ndarray, max_side: int = MAX_SIDE) -> list[Face]:
        """The faces in `image` (RGB, already turned upright; or FaceCopy's array), best first."""
        import dlib
        import numpy as np
        from PIL import Image as PILImage

        detector, landmarks, describe = self._models()
        pixels = image if isinstance(image, np.ndarray) else FaceCopy(max_side)(image)
        height, width = pixels.shape[:2]
        rects, scores, _ = detector.run(pixels, UPSAMPLE, 0.0)
        faces = []
        for rect, score in sorted(zip(rects, scores), key=lambda p: -p[1]):
            shape = landmarks(pixels, rect)
            vector = np.asarray(describe.compute_face_descriptor(pixels, shape), dtype=np.float32)
            chip = dlib.get_face_chip(pixels, shape, size=THUMB_PX)
            left, top = max(0, rect.left()), max(0, rect.top())
            right, bottom = min(width, rect.right()), min(height, rect.bottom())
            box = (left / width, top / height, (right - left) / width, (bottom - top) / height)
            faces.append(Face(box, vector / float(np.linalg.norm(vector)), float(score),
                              PILImage.fromarray(chip)))  # type: ignore[arg-type]
        return faces
