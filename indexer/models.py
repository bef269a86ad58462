"""Which encoders made a library's vectors, and the encoders themselves, loaded on first use.

A library records the CLIP encoder (model spec, pretrained tag or weights hash, dimension) and,
once it has sounds, the CLAP model. Opening it with another encoder, or with weights that
changed on disk, is an EncoderMismatchError rather than silent mixing.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy.orm import Session

from indexer.catalog import get_meta, set_meta
from retrieval.encoders import Encoder, EncoderSpec, load_encoder, resolve_spec
from retrieval.errors import EncoderMismatchError, ModelLoadError


def same_weights(recorded: dict[str, Any] | None, ident: dict[str, Any], what: str) -> None:
    """Refuse an encoder whose weights differ from the ones that made the library's vectors."""
    if recorded is None:
        return
    for key in ("dim", "weights_sha256"):
        if recorded.get(key) != ident.get(key):
            raise EncoderMismatchError(
                f"the weights of {what} changed since this library was built "
                f"({key}: {recorded.get(key)} -> {ident.get(key)}); re-index into a new --library"
            )


class Models:
    """The library's CLIP encoder (`encoder`) and CLAP model (`audio_encoder`).

    `model`/`pretrained` may be omitted to reuse what the library recorded; a different encoder
    than the recorded one raises EncoderMismatchError. An already loaded `encoder` may be given
    instead (it is checked the same way); `audio_encoder` likewise, for a reopened view.
    """

    def __init__(self, session: Session, *, model: str | None = None, pretrained: str | None = None,
                 encoder: Encoder | None = None, audio_model: str | None = None, audio_encoder: Any = None,
                 device: str = "auto", identity: dict[str, Any] | None = None) -> None:
        self.device = device
        # `identity`: a view of one of the library's added models (indexer.extra_models).
        self.recorded_identity: dict[str, Any] | None = identity or get_meta(session, "encoder")
        self.recorded_audio: dict[str, Any] | None = get_meta(session, "audio_encoder")
        self._encoder: Encoder | None = None
        self._audio_encoder: Any = None
        self._audio_error: ModelLoadError | None = None
        self._audio_lock = threading.Lock()
        if encoder is not None:
            model, pretrained = encoder.spec.model, encoder.spec.pretrained or "none"
        if self.recorded_identity:
            rec_spec = EncoderSpec.from_dict(self.recorded_identity)
            if model is not None or pretrained is not None:
                asked = resolve_spec(model or rec_spec.model, pretrained)
                if asked.model != rec_spec.model or (pretrained is not None and asked.pretrained != rec_spec.pretrained):
                    raise EncoderMismatchError(
                        f"this library was built with {rec_spec.describe()}, not {asked.describe()}; "
                        "drop --model/--pretrained to use the library's own encoder, use another --library, "
                        "or add that model's vectors beside (`xmr index --model ... --add-model`)"
                    )
            self.spec = rec_spec
        else:
            self.spec = resolve_spec(model, pretrained)
        if encoder is not None:
            same_weights(self.recorded_identity, encoder.identity(), self.spec.describe())
            self._encoder = encoder
        self.audio_model = self._resolve_audio_model(audio_model)
        if audio_encoder is not None and getattr(audio_encoder, "model_id", None) == self.audio_model:
            self._audio_encoder = audio_encoder

    def _resolve_audio_model(self, asked: str | None) -> str:
        from retrieval.encoders.clap import resolve_audio_model

        rec = (self.recorded_audio or {}).get("audio_model")
        if asked is not None and rec is not None and resolve_audio_model(asked) != rec:
            raise EncoderMismatchError(
                f"this library's sounds were indexed with {rec}, not {resolve_audio_model(asked)}; "
                "drop --audio-model to use the library's own, or use another --library"
            )
        return rec or resolve_audio_model(asked)

    @property
    def encoder(self) -> Encoder:
        """The CLIP encoder, loaded on first use and checked against the library's record."""
        if self._encoder is None:
            enc = load_encoder(self.spec, self.device)
            same_weights(self.recorded_identity, enc.identity(), self.spec.describe())
            self._encoder = enc
        return self._encoder

    @property
    def loaded_encoder(self) -> Encoder | None:
        """The CLIP encoder if it is loaded, without loading it."""
        return self._encoder

    @property
    def audio_encoder(self) -> Any:
        """The CLAP encoder, loaded on first use (thread-safe: decode workers may ask first).

        A load failure is remembered, so a folder of sounds reports it once per file without
        retrying a download for each.
        """
        with self._audio_lock:
            if self._audio_encoder is None:
                if self._audio_error is not None:
                    raise self._audio_error
                from retrieval.encoders.clap import ClapAudioEncoder

                try:
                    enc = ClapAudioEncoder(self.audio_model, self.device)
                except ModelLoadError as e:
                    self._audio_error = e
                    raise
                same_weights(self.recorded_audio, enc.identity(), f"the audio model {self.audio_model}")
                self._audio_encoder = enc
            return self._audio_encoder

    @property
    def loaded_audio_encoder(self) -> Any:
        """The CLAP encoder if it is loaded, without loading it."""
        return self._audio_encoder

    def record(self, session: Session) -> None:
        """Record the CLIP encoder of a new library (loads it)."""
        if self.recorded_identity is None:
            self.recorded_identity = self.encoder.identity()
            set_meta(session, "encoder", self.recorded_identity)

    def record_audio(self, session: Session) -> None:
        """Record the CLAP model once the first sounds are encoded with it."""
        if self.recorded_audio is None and self._audio_encoder is not None:
            self.recorded_audio = self._audio_encoder.identity()
            set_meta(session, "audio_encoder", self.recorded_audio)
