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
import os
import threading
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ReaderSettings:
    """What a run's readers are (picklable: decode processes and Ray workers build their own
    Readers from it): the settings asked for or remembered, and the engines the library recorded."""

    ocr_on: bool = True
    speech_model: str | None = None
    recorded_ocr: dict[str, Any] | None = None
    recorded_speech: dict[str, Any] | None = None
    device: str = "cpu"
    asked_ocr: bool | None = None  # what this run was asked for (remembered for the next runs)
    asked_speech: str | None = None
    # whether a reader that cannot be had is said here: a decode process or a Ray worker hands
    # its reason to the run instead (Readers.adopt), which says it once
    tell: bool = True

    @classmethod
    def of(cls, session: Session, *, ocr: bool | None = None, speech_model: str | None = None,
           device: str = "cpu") -> ReaderSettings:
        """The run's settings: those asked for, else the library's remembered ones, else defaults."""
        settings = get_meta(session, "ocr") or {}
        speech = get_meta(session, "speech") or {}
        speech_model = _absolute_if_folder(speech_model)  # remembered: a later run may start elsewhere
        chosen = speech_model if speech_model is not None else speech.get("model", DEFAULT_SPEECH_MODEL)
        return cls(ocr_on=ocr if ocr is not None else bool(settings.get("enabled", True)),
                   speech_model=None if chosen.lower() in OFF else chosen,
                   recorded_ocr=get_meta(session, "ocr_engine"), recorded_speech=get_meta(session, "speech_engine"),
                   device=device, asked_ocr=ocr, asked_speech=speech_model)

    def remember(self, session: Session) -> None:
        """Store the settings this run was asked for (the next runs default to them)."""
        if self.asked_ocr is not None:
            set_meta(session, "ocr", {"enabled": self.asked_ocr})
        if self.asked_speech is not None:
            set_meta(session, "speech", {"model": self.asked_speech})


def _absolute_if_folder(name: str | None) -> str | None:
    """A speech model given as a folder, as an absolute path; a size name ("base") as it is."""
    if name is None:
        return None
    expanded = os.path.expanduser(name)
    return os.path.abspath(expanded) if os.path.isdir(expanded) else name


class Readers:
    """OCR and speech for one run (or one decode process of it): `ocr()` and `speech()` return
    the reader, or None when it is off or cannot be had (said once)."""

    def __init__(self, settings: ReaderSettings) -> None:
        self.settings = settings
        self.ocr_on, self.speech_model = settings.ocr_on, settings.speech_model
        self.recorded_ocr, self.recorded_speech = settings.recorded_ocr, settings.recorded_speech
        self._ocr: Any = None
        self._speech: Any = None
        self._failed: set[str] = set()
        self._lock = threading.Lock()
        self._adopted: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, str] = {}  # what could not be had, and why

    def unavailable(self, what: str, reason: str) -> None:
        """A reader or model this run cannot have: said once (by the run, for its workers)."""
        with self._lock:
            self._off(what, reason)

    def _off(self, what: str, reason: str) -> None:
        if what not in self._failed:
            self._failed.add(what)
            self.notes[what] = reason
            if self.settings.tell:
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

                model, device = self.speech_model, self.settings.device
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

    def used(self) -> dict[str, dict[str, Any]]:
        """The identities of the engines that were loaded here (a decode process hands them over)."""
        out = dict(self._adopted)
        if self._ocr is not None:
            out["ocr"] = self._ocr.identity()
        if self._speech is not None:
            out["speech"] = self._speech.identity()
        return out

    def adopt(self, engines: dict[str, dict[str, Any]], notes: dict[str, str] | None = None) -> None:
        """Engines that read files in decode processes or on Ray workers: recorded like this one's
        own; the readers they could not have: said once for the run."""
        self._adopted.update(engines)
        for what, reason in (notes or {}).items():
            self.unavailable(what, reason)

    def record(self, session: Session) -> None:
        """Record the engines that read something in this run (once per library)."""
        for what, ident in self.used().items():
            if getattr(self, f"recorded_{what}") is None:
                setattr(self, f"recorded_{what}", ident)
                set_meta(session, f"{what}_engine", ident)
