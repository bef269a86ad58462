"""What was said in sounds and videos: faster-whisper (Whisper in CTranslate2), with its
voice-activity detection (Silero VAD) so that music and noise are not transcribed.

`--speech-model` is a faster-whisper size name ("base", "small.en", "large-v3", ...: downloaded
from the model hub once, then used from its cache) or a folder holding a CTranslate2 Whisper
model (model.bin, config.json, tokenizer.json). The default is "base": multilingual, and about
real time / 10 on two CPU cores. "none" turns speech off.

Sound is read with PyAV at 16 kHz in blocks of BLOCK_S seconds, each transcribed on its own
(times offset by the block's start), so memory stays that of a block whatever the length.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from retrieval.errors import DecodeError, ModelLoadError

DEFAULT_SPEECH_MODEL = "base"
OFF = ("none", "off")
RATE = 16_000  # Whisper's sampling rate
BLOCK_S = 600  # seconds of sound transcribed at a time
PAUSE_S = 1.0  # a silence this long between words ends a transcript item


@dataclass(frozen=True)
class Said:
    """One sentence (or stretch between pauses) of speech: its seconds in the file, its words,
    how sure the model was of them (mean word probability, 0..1)."""

    start: float
    end: float
    text: str
    confidence: float


def _hash_folder(folder: str) -> str:
    """One hash of a model folder's files, each named (as the CLAP identity hashes its own)."""
    from retrieval.encoders.clip import file_sha256

    h = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and path.suffix in (".bin", ".json", ".txt"):
            h.update(path.name.encode() + b"\0" + file_sha256(path).encode())
    return h.hexdigest()


def _cuda_devices() -> int:
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # noqa: BLE001 - no CUDA build or driver: the CPU
        return 0


class Transcriber:
    """A faster-whisper model, loaded at construction (ModelLoadError when it cannot be)."""

    def __init__(self, model: str = DEFAULT_SPEECH_MODEL, device: str = "cpu", language: str | None = None) -> None:
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.utils import download_model
        except ImportError as e:
            raise ModelLoadError(f"speech needs faster-whisper ({e}); pip install faster-whisper") from None
        self.name = model
        self.language = language
        if os.path.isdir(model):
            folder = model
        else:
            from retrieval.encoders.hub import go_offline_unless_reachable

            online = go_offline_unless_reachable()
            try:
                folder = download_model(model, local_files_only=not online)
            except Exception as e:  # unknown size name, hub unreachable, not in the cache
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                where = "" if online else " (the model hub cannot be reached and it is not in the local cache)"
                raise ModelLoadError(f"cannot load the speech model {model!r}{where}: {reason}; give --speech-model "
                                     "a folder holding a CTranslate2 Whisper model, or --speech-model none") from None
        on_gpu = device.startswith("cuda") or (device == "auto" and _cuda_devices() > 0)
        try:  # float16 on a GPU (CTranslate2's fast path there), int8 on a CPU
            self.model = WhisperModel(folder, device="cuda" if on_gpu else "cpu",
                                      compute_type="float16" if on_gpu else "int8")
        except Exception as e:
            raise ModelLoadError(f"cannot load the speech model from {folder}: {e}") from None
        self.folder = folder
        self._identity: dict[str, Any] | None = None
        self._lock = threading.Lock()  # one transcription at a time: it uses every core already

    def identity(self) -> dict[str, Any]:
        """The model's name and a hash of its files: recorded by the library."""
        if self._identity is None:
            self._identity = {"speech_model": self.name, "weights_sha256": _hash_folder(self.folder)}
        return self._identity

    def transcribe(self, path: str) -> Iterator[Said]:
        """What was said in the first sound stream of `path`, in order (DecodeError when it has
        no sound that can be decoded)."""
        import numpy as np

        from indexer.kinds.avfile import audio_blocks

        offset, pending, have = 0.0, [], 0
        for block in audio_blocks(path, RATE):
            pending.append(block)
            have += len(block)
            if have >= BLOCK_S * RATE:
                samples = np.concatenate(pending)
                pending, have = [], 0
                yield from self._block(samples, offset)
                offset += len(samples) / RATE
        if pending:
            yield from self._block(np.concatenate(pending), offset)

    def _block(self, samples: Any, offset: float) -> Iterator[Said]:
        with self._lock:
            # Word timestamps: a segment's own start/end follow Whisper's 30 s windows and can
            # swallow the silence before it; its words' times do not (items are cut by them).
            segments, _info = self.model.transcribe(samples, language=self.language, vad_filter=True, beam_size=1,
                                                    condition_on_previous_text=False, word_timestamps=True)
            found = list(segments)  # the generator runs the model: under the lock
        for seg in found:
            for words in _sentences(seg.words or []):
                text = "".join(w.word for w in words).strip()
                if text:
                    confidence = sum(w.probability for w in words) / len(words)
                    yield Said(round(offset + words[0].start, 3), round(offset + words[-1].end, 3), text,
                               round(confidence, 3))


def _sentences(words: list[Any]) -> Iterator[list[Any]]:
    """A Whisper segment's words cut into sentences, and at pauses of PAUSE_S or more: a segment
    may run over several sentences, and a hit should start where its words are said."""
    group: list[Any] = []
    for w in words:
        if group and (w.start - group[-1].end >= PAUSE_S or group[-1].word.rstrip().endswith((".", "?", "!"))):
            yield group
            group = []
        group.append(w)
    if group:
        yield group


def speech_segments(transcriber: Transcriber, path: str) -> Iterator[Any]:
    """Segments for a file's speech: text items on its timeline (indexer.kinds)."""
    from indexer.kinds.base import Segment

    try:
        for i, said in enumerate(transcriber.transcribe(path)):
            yield Segment(said.text, embedder="text", chunk=i, start=said.start, end=said.end, snippet=said.text,
                          confidence=said.confidence)
    except DecodeError:
        return  # the sound's own decoding reports what is wrong with it
