"""Words in pictures: Tesseract through tesserocr (its C++ API in-process: no program started per
picture), with a cheap test that keeps photos without text from paying for it.

Tesseract needs its language data (`eng.traineddata`): Debian's `tesseract-ocr-eng`, Homebrew's
`tesseract`, or a folder named by TESSDATA_PREFIX. Without the data or without tesserocr, OCR is
off with one clear note, and pictures are indexed by what they look like alone.

Cost: `likely_text` looks at a copy of at most GATE_SIDE pixels for rows of small high-contrast
strokes side by side (what lines of print make), in a few milliseconds with numpy; only a
picture that has some is read by Tesseract, at up to OCR_SIDE pixels. Words Tesseract is not
sure of (below MIN_WORD_CONFIDENCE) are dropped: textures read as text give low-confidence
noise.
"""

from __future__ import annotations

import glob
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.errors import ModelLoadError

GATE_SIDE = 1024  # the text test's copy: long side at most this
OCR_SIDE = 2000  # what Tesseract reads: long side at most this (2400 read half as many of the bench photos' lines)
MIN_WORD_CONFIDENCE = 60.0
DEFAULT_LANG = "eng"
_TESSDATA_GLOBS = (
    "/usr/share/tesseract-ocr/*/tessdata",  # Debian, Ubuntu
    "/usr/share/tessdata",  # Fedora, Arch
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",  # Homebrew on Apple silicon
    "/usr/local/Cellar/tesseract/*/share/tessdata",
)


def find_tessdata(lang: str = DEFAULT_LANG) -> str | None:
    """The folder holding `{lang}.traineddata`: TESSDATA_PREFIX first, then the usual places."""
    candidates = []
    prefix = os.environ.get("TESSDATA_PREFIX")
    if prefix:
        candidates += [prefix, os.path.join(prefix, "tessdata")]
    for pattern in _TESSDATA_GLOBS:
        candidates += sorted(glob.glob(pattern), reverse=True)  # the newest version first
    return next((c for c in candidates if os.path.isfile(os.path.join(c, f"{lang}.traineddata"))), None)


@dataclass(frozen=True)
class Words:
    """What was read: lines of words, and Tesseract's mean confidence in them (0..1)."""

    text: str
    confidence: float


LEPT_SEVERITY_NONE = 6  # leptonica's L_SEVERITY_NONE


def leptonica_libraries(tesserocr: Any) -> list[str]:
    """The leptonica libraries tesserocr may have loaded: its wheel's own copy, else the system's."""
    import ctypes.util

    base = Path(tesserocr.__file__).parent
    found = sorted(glob.glob(str(base.parent / "tesserocr.libs" / "libleptonica*.so*")))
    system = ctypes.util.find_library("leptonica") or ctypes.util.find_library("lept")
    return found + ([system] if system else [])


def quiet_leptonica(tesserocr: Any) -> bool:
    """Leptonica (Tesseract's image library) prints its C-level complaints on stderr ("Error in
    boxClipToRectangle: box outside rectangle", seen on real wallpapers), over the progress bar:
    set its message severity to none in the copy tesserocr loaded. True when it was found."""
    import ctypes

    done = False
    for path in leptonica_libraries(tesserocr):
        try:
            ctypes.CDLL(path).setMsgSeverity(LEPT_SEVERITY_NONE)
            done = True
        except (OSError, AttributeError):
            continue
    return done


class Reader:
    """Tesseract for one language; one engine per thread (an engine is not thread-safe), made on
    first use. tesserocr lets go of the GIL while it reads, so decode threads read in parallel."""

    def __init__(self, lang: str = DEFAULT_LANG, tessdata: str | None = None) -> None:
        try:
            import tesserocr
        except ImportError as e:
            raise ModelLoadError(f"OCR needs tesserocr ({e}); pip install tesserocr") from None
        self.lang = lang
        self.tessdata = tessdata or find_tessdata(lang)
        if self.tessdata is None:
            raise ModelLoadError(f"no Tesseract language data for {lang!r} found (install tesseract-ocr-{lang}, "
                                 "or set TESSDATA_PREFIX)")
        self._tesserocr = tesserocr
        quiet_leptonica(tesserocr)
        self._local = threading.local()
        self._identity: dict[str, Any] | None = None
        self._api()  # fail now, not in a decode thread, when the data does not load

    def _api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            try:
                api = self._tesserocr.PyTessBaseAPI(path=self.tessdata, lang=self.lang)
            except RuntimeError as e:
                raise ModelLoadError(f"Tesseract cannot load {self.lang!r} from {self.tessdata}: {e}") from None
            api.SetVariable("debug_file", os.devnull)  # Tesseract's own notes ("Invalid resolution 0 dpi")
            self._local.api = api
        return api

    def identity(self) -> dict[str, Any]:
        """Engine, binding, language and a hash of its data: recorded by the library."""
        if self._identity is None:
            from retrieval.encoders.clip import file_sha256

            data = Path(self.tessdata) / f"{self.lang}.traineddata"
            engine = self._tesserocr.tesseract_version().split()[:2]
            self._identity = {"engine": " ".join(engine), "binding": f"tesserocr {self._tesserocr.__version__}",
                              "lang": self.lang, "data_sha256": file_sha256(data)}
        return self._identity

    def read(self, image: Any) -> Words | None:
        """The words on a PIL image (None when there are none it is sure of)."""
        tess = self._tesserocr
        api = self._api()
        api.SetImage(_fit(image.convert("L"), OCR_SIDE))
        lines: list[list[str]] = []
        confidences = []
        level = tess.RIL.WORD
        try:
            api.Recognize()
            for word in tess.iterate_level(api.GetIterator(), level):
                text, conf = word.GetUTF8Text(level), word.Confidence(level)
                if word.IsAtBeginningOf(tess.RIL.TEXTLINE) or not lines:
                    lines.append([])
                if text and conf >= MIN_WORD_CONFIDENCE and any(c.isalnum() for c in text):
                    lines[-1].append(text)
                    confidences.append(conf)
        except RuntimeError:  # "No text returned": nothing on it that Tesseract takes for text
            lines = []
        finally:
            api.Clear()
        text = "\n".join(" ".join(line) for line in lines if line)
        if sum(c.isalnum() for c in text) < 3:
            return None
        return Words(text, round(sum(confidences) / len(confidences) / 100, 3))


def _fit(image: Any, side: int) -> Any:
    if max(image.size) <= side:
        return image
    scale = side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))


def likely_text(image: Any) -> bool:
    """Might this picture hold print? Rows of strokes: in a grey copy of at most GATE_SIDE
    pixels, pixels far from their neighbourhood's mean (ink on paper, light on dark) switch on
    and off along a row often, in three tiles side by side (a word or more of letters)."""
    import numpy as np
    from PIL import ImageFilter

    grey = _fit(image.convert("L"), GATE_SIDE)
    a = np.asarray(grey, dtype=np.int16)
    if a.shape[0] < 8 or a.shape[1] < 48:
        return False
    mean = np.asarray(grey.filter(ImageFilter.BoxBlur(4)), dtype=np.int16)
    ink = np.abs(a - mean) > 40
    if ink.mean() < 0.001:  # nearly flat: no strokes anywhere
        return False
    flips = ink[:, 1:] != ink[:, :-1]
    th, tw = 8, 16
    h, w = (flips.shape[0] // th) * th, (flips.shape[1] // tw) * tw
    tiles = flips[:h, :w].reshape(h // th, th, w // tw, tw).sum(axis=(1, 3))
    dense = tiles >= 24  # about three strokes crossed by each row of the tile
    return bool((dense[:, :-2] & dense[:, 1:-1] & dense[:, 2:]).any())

