"""Encoder registry: a family name -> a loader. Heavy imports happen inside the loaders."""

from __future__ import annotations

from typing import Callable

from retrieval.encoders.base import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    IMAGE,
    TEXT,
    Encoder,
    EncoderSpec,
)
from retrieval.errors import UsageError

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRETRAINED",
    "IMAGE",
    "TEXT",
    "Encoder",
    "EncoderSpec",
    "load_encoder",
    "register_family",
]

Loader = Callable[[EncoderSpec, str], Encoder]
_FAMILIES: dict[str, Loader] = {}


def register_family(name: str, loader: Loader) -> None:
    """Make `EncoderSpec(family=name)` loadable; how real and test encoders are added alike."""
    _FAMILIES[name] = loader


def _load_open_clip(spec: EncoderSpec, device: str) -> Encoder:
    from retrieval.encoders.clip import OpenClipEncoder

    return OpenClipEncoder(spec, device=device)


register_family("open_clip", _load_open_clip)


def load_encoder(spec: EncoderSpec, device: str = "auto") -> Encoder:
    """Load the encoder `spec` names on `device` ('auto', 'cpu', 'cuda', 'cuda:1', ...)."""
    try:
        loader = _FAMILIES[spec.family]
    except KeyError:
        raise UsageError(
            f"unknown encoder family {spec.family!r}; available: {', '.join(sorted(_FAMILIES))}"
        ) from None
    return loader(spec, device)
