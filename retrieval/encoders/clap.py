"""CLAP audio + text encoder (Hugging Face transformers). torch/transformers are imported here only.

The audio tower gives xmr its sounds; the text tower is used only to fit the bridge into the
library's CLIP space (see retrieval.encoders.bridge).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from retrieval.encoders.clip import file_sha256, resolve_device
from retrieval.errors import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_AUDIO_MODEL = "laion/clap-htsat-unfused"
AUDIO = "audio"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "config.json")

LOCAL_AUDIO_HELP = (
    "To use a CLAP model you already have, pass --audio-model DIR where DIR was written by "
    "ClapModel.save_pretrained and ClapProcessor.save_pretrained (weights, config, feature "
    "extractor and tokenizer); models in the Hugging Face cache are found with HF_HUB_OFFLINE=1."
)


def resolve_audio_model(name: str | None) -> str:
    """A local folder becomes an absolute path; anything else is a Hugging Face model id."""
    name = name or DEFAULT_AUDIO_MODEL
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return os.path.abspath(expanded)
    return name


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def window_features(extractor: Any, fused: bool, samples: np.ndarray) -> dict[str, np.ndarray]:
    """One window (<= the model's window) -> CLAP's model inputs.

    Windows are never longer than the model's input, so `truncation` never crops at
    random; shorter ones are padded by repetition ("repeatpad"), as CLAP was trained.
    """
    out = extractor(
        samples,
        sampling_rate=int(extractor.sampling_rate),
        truncation="fusion" if fused else "rand_trunc",
        padding="repeatpad",
        return_tensors="np",
    )
    return {"input_features": out["input_features"][0], "is_longer": out["is_longer"][0]}


def _fail_fast_offline(model_id: str) -> None:
    """A hub model not on disk, and the hub out of reach: say so now, not after importing
    transformers and a minute of retries."""
    if not os.path.isdir(model_id):
        from retrieval.encoders.hub import unavailable

        if unavailable(model_id):
            raise ModelLoadError(
                f"could not load the audio model {model_id}: it is not in the local cache and the model hub "
                f"cannot be reached. {LOCAL_AUDIO_HELP}")


def _load_failure(model_id: str, e: Exception) -> ModelLoadError:
    reason = (str(e).splitlines()[0] if str(e) else type(e).__name__).rstrip(".")
    return ModelLoadError(f"could not load the audio model {model_id} (transformers said: {reason}). "
                          f"If this machine is offline the model must already be on disk. {LOCAL_AUDIO_HELP}")


class ClapFeatures:
    """CLAP's feature extractor alone (no weights): what a Ray decode worker needs to turn
    sound windows into model inputs (indexer.remote)."""

    def __init__(self, model: str) -> None:
        from transformers import ClapConfig, ClapFeatureExtractor

        _quiet_transformers()
        self.model_id = resolve_audio_model(model)
        _fail_fast_offline(self.model_id)
        try:
            self.feature_extractor = ClapFeatureExtractor.from_pretrained(self.model_id)
            self.fused = bool(getattr(ClapConfig.from_pretrained(self.model_id).audio_config, "enable_fusion", False))
        except Exception as e:  # OSError for a missing repo/dir
            raise _load_failure(self.model_id, e) from e
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.window_samples = int(self.feature_extractor.nb_max_samples)

    def features(self, samples: np.ndarray) -> dict[str, np.ndarray]:
        return window_features(self.feature_extractor, self.fused, samples)


class ClapAudioEncoder:
    """A CLAP checkpoint: `encode_audio` for sound windows, `encode_text` for captions."""

    modalities = frozenset({AUDIO})

    def __init__(self, model: str, device: str = "auto") -> None:
        self.model_id = resolve_audio_model(model)
        _fail_fast_offline(self.model_id)
        import torch
        from transformers import ClapModel, ClapProcessor

        _quiet_transformers()
        self.device = resolve_device(device)
        try:
            net = ClapModel.from_pretrained(self.model_id)
            processor = ClapProcessor.from_pretrained(self.model_id)
        except Exception as e:  # OSError for a missing repo/dir, ValueError for a wrong kind of model
            raise _load_failure(self.model_id, e) from e
        self._torch = torch
        self.model = net.to(self.device).eval()
        self.feature_extractor = processor.feature_extractor
        self.tokenizer = processor.tokenizer
        self.fused = bool(getattr(net.config.audio_config, "enable_fusion", False))
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.window_samples = int(self.feature_extractor.nb_max_samples)
        self.dim = int(net.config.projection_dim)
        self._identity: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def identity(self) -> dict[str, Any]:
        """Model id plus what pins its weights: a content hash (local dir) or the hub revision."""
        if self._identity is None:
            digest = None
            folder = Path(self.model_id)
            if folder.is_dir():
                h = hashlib.sha256()
                for name in _WEIGHT_FILES:
                    if (folder / name).is_file():
                        h.update(name.encode() + b"\0" + file_sha256(folder / name).encode())
                digest = h.hexdigest()
            self._identity = {
                "audio_model": self.model_id,
                "weights_sha256": digest,
                "revision": getattr(self.model.config, "_commit_hash", None) if digest is None else None,
                "dim": self.dim,
                "sampling_rate": self.sampling_rate,
                "window_s": self.window_samples / self.sampling_rate,
            }
        return self._identity

    def features(self, samples: np.ndarray) -> dict[str, np.ndarray]:
        """One window (<= window_samples) -> model inputs; runs in decode threads."""
        return window_features(self.feature_extractor, self.fused, samples)

    @staticmethod
    def _pooled(out: Any) -> Any:
        # transformers 5 returns a model output whose pooler_output is the projected embedding;
        # 4.x returned the tensor itself.
        return out if hasattr(out, "shape") else out.pooler_output

    def _to_unit(self, x: Any) -> np.ndarray:
        v = x.detach().float().cpu().numpy().astype(np.float32)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(v)

    def encode_audio(self, feats: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
        """Windows' features -> (n, dim) unit vectors in CLAP's space."""
        torch = self._torch
        x = torch.from_numpy(np.stack([f["input_features"] for f in feats])).to(self.device)
        longer = torch.from_numpy(np.stack([f["is_longer"] for f in feats])).to(self.device)
        with self._lock, torch.inference_mode():
            return self._to_unit(self._pooled(self.model.get_audio_features(input_features=x, is_longer=longer)))

    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        torch = self._torch
        outs = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(list(texts[i : i + batch_size]), padding=True, truncation=True, return_tensors="pt")
            tok = {k: v.to(self.device) for k, v in tok.items()}
            with self._lock, torch.inference_mode():
                outs.append(self._to_unit(self._pooled(self.model.get_text_features(**tok))))
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)
