"""open_clip image + text encoder. torch and open_clip are imported here only."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from retrieval.encoders.base import IMAGE, TEXT, EncoderSpec
from retrieval.errors import ModelLoadError, UsageError

log = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
# What else decides a local-dir model's vectors: its config, and a Hugging Face text tower's
# shape and tokenizer (multilingual models).
_CONFIG_FILES = ("open_clip_config.json", "config.json", "tokenizer.json", "tokenizer_config.json")

LOCAL_WEIGHTS_HELP = (
    "To use weights you already have, pass --pretrained /path/to/open_clip_pytorch_model.bin "
    "(with the matching --model), or --model local-dir:DIR where DIR holds open_clip_config.json "
    "and the weights file; weights in the Hugging Face cache are found with HF_HUB_OFFLINE=1."
)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} requested but CUDA is not available")
    return device


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weight_files(spec: EncoderSpec) -> list[Path]:
    """The files whose content defines the weights (empty for registry tags and hub repos)."""
    if spec.model.startswith("local-dir:"):
        folder = Path(spec.model[len("local-dir:"):]).expanduser()
        return sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES or p.name in _CONFIG_FILES)
    if spec.pretrained and not spec.model.startswith("hf-hub:") and os.path.isfile(spec.pretrained):
        return [Path(spec.pretrained)]
    return []


def local_text_tower(spec: EncoderSpec) -> dict[str, Any]:
    """For a `local-dir:` model whose text tower is a Hugging Face model (open_clip's multilingual
    models: xlm-roberta, mt5, nllb) and whose folder holds that tower's config.json: build the
    tower from the folder, not from the hub name in open_clip_config.json (open_clip already reads
    the tokenizer from the folder). Returns create_model's override, or nothing."""
    if not spec.model.startswith("local-dir:"):
        return {}
    import json

    folder = Path(spec.model[len("local-dir:"):]).expanduser()
    try:
        text_cfg = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # _check_spec and open_clip report a broken folder
    if not text_cfg.get("hf_model_name") or not (folder / "config.json").is_file():
        return {}
    # The CLIP checkpoint holds the tower's weights: only its shape comes from config.json.
    return {"text_cfg": {**text_cfg, "hf_model_name": str(folder.resolve()), "hf_model_pretrained": False}}


def _check_spec(spec: EncoderSpec) -> None:
    """Turn open_clip's generic failures for bad names into messages listing the valid choices."""
    import open_clip

    model = spec.model
    if model.startswith("local-dir:"):
        folder = Path(model[len("local-dir:"):]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise ModelLoadError(f"{model}: no open_clip_config.json in {folder}")
        if not any(p.suffix in _WEIGHT_SUFFIXES for p in folder.iterdir()):
            raise ModelLoadError(f"{model}: no weights file (*.safetensors, *.bin, *.pth) in {folder}")
        return
    if model.startswith("hf-hub:"):
        return
    name = model.replace("/", "-")
    if open_clip.get_model_config(name) is None:
        raise UsageError(f"unknown model {model!r}; available: {', '.join(open_clip.list_models())}")
    tag = spec.pretrained
    if tag is None or os.path.isfile(tag) or open_clip.get_pretrained_cfg(name, tag):
        return
    if os.sep in tag or tag.endswith(_WEIGHT_SUFFIXES):
        raise ModelLoadError(f"checkpoint file not found: {tag}")
    tags = open_clip.list_pretrained_tags_by_model(name)
    raise UsageError(
        f"unknown pretrained tag {tag!r} for {model}; available: {', '.join(tags) or 'none'} "
        "(or a checkpoint file path)"
    )


class OpenClipEncoder:
    """Any open_clip model: registry name + tag/checkpoint, `hf-hub:`, or `local-dir:`."""

    modalities = frozenset({IMAGE, TEXT})

    def __init__(self, spec: EncoderSpec, device: str = "auto") -> None:
        self.spec = spec
        if not spec.model.startswith("local-dir:") and not (spec.pretrained and os.path.isfile(spec.pretrained)):
            # Weights from the hub: when they are not on disk and the hub is out of reach, say so
            # now, not after importing open_clip and a minute of retries.
            from retrieval.encoders.hub import KNOWN_REPOS, go_offline_unless_reachable, unavailable

            repo = spec.model[len("hf-hub:"):] if spec.model.startswith("hf-hub:") else KNOWN_REPOS.get((spec.model, spec.pretrained))
            if unavailable(repo):
                raise ModelLoadError(self._load_failure(OSError(
                    f"they are not in the local cache, and the model hub cannot be reached to fetch {repo}"), who=""))
            go_offline_unless_reachable()
        import open_clip
        import torch

        _check_spec(spec)
        self.device = resolve_device(device)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.model,
                pretrained=None if spec.model.startswith(("hf-hub:", "local-dir:")) else spec.pretrained,
                device=self.device,
                **local_text_tower(spec),
            )
            tokenizer = open_clip.get_tokenizer(spec.model)
        except Exception as e:  # open_clip raises bare RuntimeError/OSError for every failure
            raise ModelLoadError(self._load_failure(e)) from e
        if spec.pretrained is None and not spec.model.startswith(("hf-hub:", "local-dir:")):
            log.warning("%s has random weights (--pretrained none): results will be meaningless", spec.model)
        model.eval()
        self._torch = torch
        self.model = model
        # Pictures travel as uint8 (a quarter of float32's bytes between decode workers and the
        # model, and what a GPU wants copied) and are normalised where the model runs.
        self.preprocess, self._normalize = split_preprocess(preprocess)
        self._fp16 = self.device.startswith("cuda")
        self._copy_stream: Any = None
        if self._fp16:  # fp16 weights on a GPU: tensor cores without autocast's casts per call
            model.half()
        self.tokenizer = tokenizer
        self.context_length = int(getattr(tokenizer, "context_length", 77) or 77)
        self._prefix = self._prefix_ok()
        self._query_transformer: Any = None  # set by enable_fast_queries
        size = getattr(model.visual, "image_size", 224)
        self.input_size = int(min(size) if isinstance(size, (tuple, list)) else size)
        self.dim = int(self.encode_text([""]).shape[1])
        self._identity: dict[str, Any] | None = None

    @property
    def batch_size(self) -> int:
        """Images per model call: large batches keep a GPU busy (512 from 40 GB of memory on; out
        of memory halves it, indexer.stages.embed.Batches); on CPU 32 is past the knee."""
        if not self.device.startswith("cuda"):
            return 32
        total = self._torch.cuda.get_device_properties(self._torch.device(self.device)).total_memory
        return 512 if total >= 40 * 2**30 else 256

    def _load_failure(self, e: Exception, who: str = "open_clip said: ") -> str:
        what = self.spec.describe()
        reason = (str(e).splitlines()[0] if str(e) else type(e).__name__).rstrip(".")
        return (
            f"could not load the weights for {what} ({who}{reason}). "
            f"If this machine is offline or cannot reach the model hub, the weights must already be "
            f"on disk. {LOCAL_WEIGHTS_HELP}"
        )

    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            files = weight_files(self.spec)
            digest = None
            if files:
                h = hashlib.sha256()
                for p in files:
                    h.update(p.name.encode() + b"\0" + file_sha256(p).encode())
                digest = h.hexdigest()
            self._identity = {**self.spec.to_dict(), "weights_sha256": digest, "dim": self.dim}
        return self._identity

    def _to_numpy(self, x: Any) -> np.ndarray:
        return np.ascontiguousarray(x.detach().float().cpu().numpy(), dtype=np.float32)

    def _autocast(self) -> Any:
        """Nothing: the model's own precision (fp16 weights on CUDA, fp32 on CPU). Vectors are
        returned as float32 either way."""
        import contextlib

        return contextlib.nullcontext()

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode_texts(texts, None)

    def _encode_texts(self, texts: Sequence[str], transformer: Any) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        with self._torch.inference_mode(), self._autocast():
            if self._prefix:
                return self._to_numpy(self._encode_text_prefix(tokens, transformer))
            return self._to_numpy(self.model.encode_text(tokens, normalize=True))

    def enable_fast_queries(self) -> bool:
        """Encode queries (`encode_query`) with a copy of the text transformer whose linear
        layers (attention projections and MLP) hold fp16 weights packed for fbgemm; activations
        stay fp32 and documents are still encoded by the fp32 model. For warm processes such as
        a server: packing takes ~0.5 s, then a ViT-B-32 query encodes in ~13 ms instead of ~30
        (this torch's MKL is slow on AMD CPUs; fbgemm is not). Cosine of query vectors to fp32:
        >= 0.99999 (tests/test_text_prefix.py; scripts/bench_query.py prints it for any model).
        CPU only; returns whether it is on (calling it again is free)."""
        if self._query_transformer is not None:
            return True
        if self.device != "cpu" or not self._prefix:
            return False
        from retrieval.encoders.fast_text import pack_fp16

        try:
            self._query_transformer = pack_fp16(self.model.transformer)
        except (AttributeError, RuntimeError) as e:  # no fbgemm, or another block layout (UnsupportedLayout)
            log.info("fast query encoding unavailable: %s", e)
            return False
        return True

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        """Like encode_text, for queries: uses the fast copy when enable_fast_queries() is on."""
        return self._encode_texts(texts, self._query_transformer)

    def _prefix_ok(self) -> bool:
        m = self.model
        return (
            all(hasattr(m, a) for a in ("token_embedding", "positional_embedding", "transformer", "ln_final"))
            and getattr(m, "attn_mask", None) is not None  # a causal text tower
            and getattr(m, "text_pool_type", "argmax") in ("argmax", "eos")
        )

    def _encode_text_prefix(self, tokens: Any, transformer: Any = None) -> Any:
        """open_clip's encode_text, run only up to the longest end-of-text token of the batch.

        The text transformer is causal and the output is read at the end-of-text position, so
        the padding after it cannot change the result: cutting it is exact, and most queries
        are a few tokens out of 77. (tests/test_text_prefix.py checks equality to the full run.)
        """
        torch, m = self._torch, self.model
        if m.text_pool_type == "eos":
            pos = (tokens == m.text_eos_id).int().argmax(dim=-1)
        else:
            pos = tokens.argmax(dim=-1)
        n = int(pos.max()) + 1
        transformer = transformer or m.transformer
        cast = transformer.get_cast_dtype()
        x = m.token_embedding(tokens[:, :n]).to(cast) + m.positional_embedding[:n].to(cast)
        x = transformer(x, attn_mask=m.attn_mask[:n, :n])
        x = m.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), pos]
        if m.text_projection is not None:
            x = m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection
        return torch.nn.functional.normalize(x, dim=-1)

    def preprocess_image(self, image: Any) -> Any:
        return self.preprocess(image)

    def encode_images(self, batch: Sequence[Any]) -> np.ndarray:
        """Prepared pictures (uint8 CHW from `preprocess`, or float already normalised; on any
        device) -> (n, dim) float32 unit vectors."""
        return self._to_numpy(self.encode_images_on_device(batch))

    def encode_images_on_device(self, batch: Sequence[Any]) -> Any:
        """Like encode_images, the vectors left on the model's device: nothing waits for the GPU,
        so the next batch is prepared and copied while this one runs."""
        with self._torch.inference_mode():
            return self.model.encode_image(self.model_input(batch), normalize=True)

    def model_input(self, batch: Sequence[Any]) -> Any:
        """A batch on the model's device in its dtype, normalised there if it came as uint8."""
        torch = self._torch
        x = torch.stack(list(batch)) if not isinstance(batch, torch.Tensor) else batch
        x = self._to_device(x)
        if x.dtype == torch.uint8:
            mean, std = self._normalize
            x = x.float().div(255).sub_(mean.to(x.device)).div_(std.to(x.device))  # what ToTensor + Normalize do
        return x.half() if self._fp16 else x.float()

    def _to_device(self, x: Any) -> Any:
        """To a GPU from pinned memory on a stream of its own: the copy overlaps the model still
        running on the previous batch, and the model's stream waits for it only then."""
        torch = self._torch
        if x.device.type != "cpu" or not self.device.startswith("cuda"):
            return x.to(self.device)
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(device=self.device)
        compute = torch.cuda.current_stream(self.device)
        x = x.pin_memory()
        with torch.cuda.stream(self._copy_stream):
            on_device = x.to(self.device, non_blocking=True)
        compute.wait_stream(self._copy_stream)
        on_device.record_stream(compute)  # its memory is not reused before the model is done with it
        return on_device

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)


def split_preprocess(preprocess: Any) -> tuple[Any, tuple[Any, Any] | None]:
    """open_clip's eval transform (..., ToTensor, Normalize) as a PIL -> uint8 CHW transform and
    the (mean, std) that `model_input` applies; a transform of another shape is kept whole."""
    import torch
    from torchvision.transforms import Compose, PILToTensor

    steps = list(getattr(preprocess, "transforms", []))
    if len(steps) < 2 or type(steps[-1]).__name__ != "Normalize" or "ToTensor" not in type(steps[-2]).__name__:
        return preprocess, None
    norm = steps[-1]
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)  # noqa: E731
    return Compose([*steps[:-2], PILToTensor()]), (as_tensor(norm.mean), as_tensor(norm.std))


def count_tokens(tok: Any, text: str) -> int:
    """Tokens `text` takes in an open_clip tokenizer's context, special tokens included (also
    what a Ray decode worker counts with, given only the tokenizer)."""
    if hasattr(tok, "encoder") and hasattr(tok, "encode"):  # open_clip's CLIP BPE tokenizer
        return len(tok.encode(text)) + 2  # + start and end of text
    if hasattr(tok, "tokenizer"):  # HFTokenizer wraps a transformers tokenizer
        return len(tok.tokenizer(tok.clean_fn(text))["input_ids"])
    return int((tok([text])[0] != 0).sum())
