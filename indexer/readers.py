"""The readers of words in media, for one index run: OCR (indexer.ocr) and speech
(indexer.speech), with the library's remembered settings and recorded identities.

`--ocr/--no-ocr` and `--speech-model` are remembered by the library (meta `ocr`, `speech`), so a
later `xmr index` reads new files the way earlier ones were read. The engine that read (OCR:
Tesseract's version and a hash of its language data; speech: the model's name and a hash of its
files) is recorded once it has read something; a run whose engine differs from the record leaves
that reading off with one note, rather than mixing two engines' words in one library.

Both load on first use, in a decode thread: a run over photos never loads the speech model. A
reader that cannot be had (no Tesseract data, no model offline) is one note on stderr, and the
files are indexed without it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from sqlalchemy.orm import Session

from indexer.catalog import get_meta, set_meta
from indexer.speech import DEFAULT_SPEECH_MODEL, OFF
from retrieval.errors import ModelLoadError

log = logging.getLogger("xmr")

# Engines loaded in this process, by what they are; a failure to load is kept too, so a folder of
# pictures or sounds reports it once and a later run in the same process (the server) reuses them.
_loaded: dict[tuple[str, ...], Any] = {}
_loaded_lock = threading.Lock()


def load_once(key: tuple[str, ...], make: Callable[[], Any]) -> Any:
    """`make()` once per process for `key`, kept (a ModelLoadError too, raised again)."""
    with _loaded_lock:
        got = _loaded.get(key)
        if got is None:
            try:
                got = _loaded[key] = make()
            except ModelLoadError as e:
                got = _loaded[key] = e
    if isinstance(got, ModelLoadError):
        raise got
    return got


class Readers:
    """OCR and speech for one run: `ocr()` and `speech()` return the reader, or None when it is
    off or cannot be had (said once)."""

    def __init__(self, session: Session, *, ocr: bool | None = None, speech_model: str | None = None,
                 device: str = "cpu") -> None:
        settings = get_meta(session, "ocr") or {}
        self.ocr_on = ocr if ocr is not None else bool(settings.get("enabled", True))
        speech = get_meta(session, "speech") or {}
        chosen = speech_model if speech_model is not None else speech.get("model", DEFAULT_SPEECH_MODEL)
        self.speech_model: str | None = None if chosen.lower() in OFF else chosen
        self.device = device
        self.recorded_ocr: dict[str, Any] | None = get_meta(session, "ocr_engine")
        self.recorded_speech: dict[str, Any] | None = get_meta(session, "speech_engine")
        self._ocr: Any = None
        self._speech: Any = None
        self._failed: set[str] = set()
        self._lock = threading.Lock()
        self._asked = (ocr, speech_model)
        self._adopted: dict[str, dict[str, Any]] = {}

    def remember(self, session: Session) -> None:
        """Store the settings this run was asked for (the next runs default to them)."""
        ocr, speech_model = self._asked
        if ocr is not None:
            set_meta(session, "ocr", {"enabled": ocr})
        if speech_model is not None:
            set_meta(session, "speech", {"model": speech_model})

    def _off(self, what: str, reason: str) -> None:
        if what not in self._failed:
            self._failed.add(what)
            log.warning("%s", reason)

    def ocr(self) -> Any:
        """The OCR reader (indexer.ocr.Reader), or None."""
        if not self.ocr_on or "ocr" in self._failed:
            return None
        with self._lock:
            if self._ocr is None and "ocr" not in self._failed:
                from indexer.ocr import DEFAULT_LANG, Reader

                try:
                    reader = load_once(("ocr", DEFAULT_LANG), Reader)
                    self._same("ocr", self.recorded_ocr, reader.identity(), "--no-ocr")
                    self._ocr = reader
                except ModelLoadError as e:
                    self._off("ocr", f"words in pictures are not read (OCR off): {e}")
            return self._ocr

    def speech(self) -> Any:
        """The speech transcriber (indexer.speech.Transcriber), or None."""
        if self.speech_model is None or "speech" in self._failed:
            return None
        with self._lock:
            if self._speech is None and "speech" not in self._failed:
                from indexer.speech import Transcriber

                model, device = self.speech_model, self.device
                try:
                    t = load_once(("speech", model, device), lambda: Transcriber(model, device))
                    self._same("speech", self.recorded_speech, t.identity(), "--speech-model none")
                    self._speech = t
                except ModelLoadError as e:
                    self._off("speech", f"speech is not transcribed: {e}")
            return self._speech

    @staticmethod
    def _same(what: str, recorded: dict[str, Any] | None, ident: dict[str, Any], off_flag: str) -> None:
        if recorded is not None and recorded != ident:
            was = ", ".join(f"{k} {v}" for k, v in recorded.items() if "sha256" not in k)
            now = ", ".join(f"{k} {v}" for k, v in ident.items() if "sha256" not in k)
            raise ModelLoadError(f"this library's {what} was read by {was}; this run has {now}"
                                 f"{' (other data)' if was == now else ''}; words read by two engines are not mixed: "
                                 f"give the library's own, or {off_flag}, or index into a new --library")

    def adopt(self, engines: dict[str, dict[str, Any]]) -> None:
        """Engines that read files on Ray workers (indexer.remote): recorded like this process's own."""
        self._adopted.update(engines)

    def record(self, session: Session) -> None:
        """Record the engines that read something in this run (once per library)."""
        for what, ident in self._adopted.items():
            if getattr(self, f"recorded_{what}") is None:
                setattr(self, f"recorded_{what}", ident)
                set_meta(session, f"{what}_engine", ident)
        if self._ocr is not None and self.recorded_ocr is None:
            self.recorded_ocr = self._ocr.identity()
            set_meta(session, "ocr_engine", self.recorded_ocr)
        if self._speech is not None and self.recorded_speech is None:
            self.recorded_speech = self._speech.identity()
            set_meta(session, "speech_engine", self.recorded_speech)
