"""Encoder registry: a family name -> a loader. Heavy imports happen inside the loaders."""

from __future__ import annotations

import os
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
    "resolve_spec",
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


def resolve_spec(model: str | None, pretrained: str | None) -> EncoderSpec:
    """Normalise what the user typed: absolute paths, 'none' for random weights, default tags."""
    model = model or DEFAULT_MODEL
    if model.startswith("local-dir:"):
        return EncoderSpec(model="local-dir:" + os.path.abspath(os.path.expanduser(model[len("local-dir:"):])), pretrained=None)
    if model.startswith("hf-hub:"):
        return EncoderSpec(model=model, pretrained=None)
    if pretrained is None:
        pretrained = DEFAULT_PRETRAINED if model == DEFAULT_MODEL else _first_tag(model)
    elif pretrained.lower() == "none":
        pretrained = None
    elif os.path.isfile(os.path.expanduser(pretrained)):
        pretrained = os.path.abspath(os.path.expanduser(pretrained))
    return EncoderSpec(model=model, pretrained=pretrained)


def _first_tag(model: str) -> str | None:
    import open_clip

    if open_clip.get_model_config(model.replace("/", "-")) is None:
        raise UsageError(f"unknown model {model!r}; available: {', '.join(open_clip.list_models())}")
    tags = open_clip.list_pretrained_tags_by_model(model.replace("/", "-"))
    if not tags:
        raise UsageError(f"no pretrained weights are known for {model!r}; pass --pretrained FILE or --pretrained none")
    return tags[0]
