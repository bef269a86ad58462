"""The bridge: a learned map from CLAP's space into the library's CLIP space.

CLAP embeds sounds and captions together; CLIP embeds pictures and captions together. Text is
what both share, so the bridge is fitted on captions alone: the same caption embedded by
CLAP's text tower (x) and by CLIP's text tower (y). A sound then lands where CLIP puts the
words that describe it (the idea of C-MCR / Ex-MCR, without their training data).

    bridge(a) = normalise((normalise(a + gap) - x_mean) @ W + y_mean)

`gap` moves CLAP audio vectors onto CLAP text vectors (the mean text vector minus the mean
audio vector: the "modality gap" of contrastive models). W is chosen on held-out captions
among ridge regression (a few strengths) and orthogonal Procrustes, then refined with a
symmetric InfoNCE + cosine loss, kept only if that measures better on the held-out captions.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from retrieval.errors import EncoderMismatchError, LibraryError, UsageError

FORMAT = "xmr-bridge/1"
METHODS = ("auto", "ridge", "procrustes", "contrastive")
_CLAP_KEYS = ("audio_model", "weights_sha256", "revision", "dim")
_CLIP_KEYS = ("model", "pretrained", "weights_sha256", "dim")
_RIDGE_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1)


class BridgeMismatchError(EncoderMismatchError):
    """A bridge was made for another CLAP model or another CLIP encoder."""


def default_captions_path() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "captions.txt"


def read_captions(path: str | os.PathLike[str] | None = None) -> list[str]:
    """One caption per line; blank lines and '#' comments ignored, duplicates dropped."""
    p = Path(path) if path else default_captions_path()
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read captions from {p}: {e}") from None
    seen: dict[str, None] = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            seen.setdefault(line, None)
    captions = list(seen)
    if len(captions) < 16:
        raise UsageError(f"{p} holds {len(captions)} captions; a bridge needs at least 16 (thousands are better)")
    return captions


def embed_caption_pairs(
    clap: Any, clip: Any, texts: list[str], clap_identity: dict[str, Any] | None,
    clip_identity: dict[str, Any] | None, bar: Any = None, chunk: int = 128,
) -> tuple[np.ndarray, np.ndarray]:
    """The captions through both text towers: (x = CLAP text, y = CLIP text), in `texts` order.

    Batches hold captions of similar length (the towers run only as far as a batch's longest
    caption), and each tower's vectors are cached per (weights, captions). `bar` (anything with
    `update(n)`) counts the captions, 2 per caption.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    ordered = [texts[i] for i in order]
    x, y = (_cached_text_vectors(enc, ident, ordered, chunk, bar)
            for enc, ident in ((clap, clap_identity), (clip, clip_identity)))
    back = np.argsort(order)
    return x[back], y[back]


def _cached_text_vectors(encoder: Any, identity: dict[str, Any] | None, texts: list[str], chunk: int, bar: Any) -> np.ndarray:
    """One text tower's caption vectors, cached in the user cache dir: refitting a bridge, or
    fitting one for a second library, does not pay again. Weights that nothing pins (random,
    unhashed) are never cached."""
    import logging

    import platformdirs

    ident = identity or {}
    pinned = ident.get("weights_sha256") or ident.get("revision") or ident.get("pretrained")
    path = None
    if pinned:
        key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode() + "\n".join(texts).encode()).hexdigest()
        path = Path(platformdirs.user_cache_dir("xmr", appauthor=False)) / "caption-vectors" / f"{key[:32]}.npy"
        try:
            vectors = np.load(path)
            if vectors.shape[0] == len(texts):
                if bar is not None:
                    bar.update(len(texts))
                return vectors
        except (OSError, ValueError):
            pass
    parts = []
    for i in range(0, len(texts), chunk):
        parts.append(encoder.encode_text(texts[i : i + chunk]))
        if bar is not None:
            bar.update(len(parts[-1]))
    vectors = np.concatenate(parts)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npy")
            np.save(tmp, vectors)
            os.replace(tmp, path)
        except OSError as e:  # a cache only: never fail a fit for it
            logging.getLogger(__name__).info("cannot cache caption vectors in %s: %s", path, e)
    return vectors


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _same(a: dict[str, Any], b: dict[str, Any], keys: Iterable[str]) -> bool:
    return all(a.get(k) == b.get(k) for k in keys)


@dataclass
class Bridge:
    W: np.ndarray  # (clap_dim, clip_dim)
    x_mean: np.ndarray  # (clap_dim,)
    y_mean: np.ndarray  # (clip_dim,)
    gap: np.ndarray  # (clap_dim,)
    manifest: dict[str, Any] = field(default_factory=dict)

    def map_text_space(self, x: np.ndarray) -> np.ndarray:
        """CLAP vectors that live where CLAP's text does -> unit CLIP-space vectors."""
        return _unit((np.atleast_2d(x) - self.x_mean) @ self.W + self.y_mean)

    def map_audio(self, a: np.ndarray) -> np.ndarray:
        """CLAP audio vectors -> unit CLIP-space vectors (gap-corrected, then mapped)."""
        return self.map_text_space(_unit(np.atleast_2d(a) + self.gap))

    def check_pair(self, clap: dict[str, Any], clip: dict[str, Any]) -> None:
        m = self.manifest
        if not _same(m.get("clap", {}), clap, _CLAP_KEYS) or not _same(m.get("clip", {}), clip, _CLIP_KEYS):
            raise BridgeMismatchError(
                f"this bridge maps {m.get('clap', {}).get('audio_model')} into {_clip_name(m.get('clip', {}))}, "
                f"not {clap.get('audio_model')} into {_clip_name(clip)}; fit one for this pair with `xmr bridge fit`"
            )

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for a in (self.W, self.x_mean, self.y_mean, self.gap):
            h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
        return h.hexdigest()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Atomically (temp file + rename): a reader never sees half a bridge."""
        from safetensors.numpy import save_file

        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tensors = {n: np.ascontiguousarray(getattr(self, n), dtype=np.float32) for n in ("W", "x_mean", "y_mean", "gap")}
        save_file(tensors, str(tmp), metadata={"xmr_bridge": json.dumps({**self.manifest, "sha256": self.sha256})})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], clap: dict[str, Any] | None = None, clip: dict[str, Any] | None = None) -> "Bridge":
        """Read a bridge; with `clap`/`clip` identities given, refuse one made for another pair."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                tensors = {n: f.get_tensor(n) for n in ("W", "x_mean", "y_mean", "gap")}
        except FileNotFoundError:
            raise LibraryError(f"no bridge file at {path}") from None
        except Exception as e:
            raise LibraryError(f"{path} is not a readable xmr bridge ({e})") from None
        try:
            manifest = json.loads(meta["xmr_bridge"])
        except (KeyError, ValueError):
            raise LibraryError(f"{path} is not an xmr bridge (no manifest)") from None
        if manifest.get("format") != FORMAT:
            raise LibraryError(f"{path}: unknown bridge format {manifest.get('format')!r}; upgrade xmr")
        bridge = cls(manifest=manifest, **tensors)
        if clap is not None and clip is not None:
            bridge.check_pair(clap, clip)
        return bridge

    def describe(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "audio_model": m.get("clap", {}).get("audio_model"),
            "clip_model": _clip_name(m.get("clip", {})),
            "method": m.get("method"),
            "captions": m.get("captions", {}).get("count"),
            "gap_windows": m.get("gap_windows"),
            "heldout_r1": m.get("heldout", {}).get("r1"),
            "heldout_cos": m.get("heldout", {}).get("cos"),
            "sha256": self.sha256,
        }


def _clip_name(clip: dict[str, Any]) -> str:
    return f"{clip.get('model')}" + (f" ({clip['pretrained']})" if clip.get("pretrained") else "")


# -- fitting ---------------------------------------------------------------------------------


def retrieval_scores(mapped: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(R@1 of each mapped row finding its own y among all ys, mean cosine of the pairs)."""
    mapped, y = _unit(mapped), _unit(y)
    sims = mapped @ y.T
    r1 = float((sims.argmax(1) == np.arange(len(y))).mean())
    return r1, float(np.mean(np.sum(mapped * y, axis=1)))


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    gram = xc.T @ xc
    lam = alpha * float(np.trace(gram)) / gram.shape[0]
    W = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), xc.T @ yc)
    return W.astype(np.float32), xm.astype(np.float32), ym.astype(np.float32)


def fit_procrustes(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (semi-)orthogonal W closest to mapping centred x onto centred y."""
    xm, ym = x.mean(0), y.mean(0)
    u, _, vt = np.linalg.svd((x - xm).T @ (y - ym), full_matrices=False)
    return (u @ vt).astype(np.float32), xm.astype(np.float32), ym.astype(np.float32)


@dataclass(frozen=True)
class Refine:
    """The contrastive refinement's settings."""

    steps: int = 300
    lr: float = 1e-3
    temperature: float = 0.05
    batch: int = 1024
    seed: int = 0


Affine = tuple[np.ndarray, np.ndarray, np.ndarray]  # W, x mean, y mean: y ~ (x - xm) @ W + ym


def refine_contrastive(x: np.ndarray, y: np.ndarray, start: Affine, opts: Refine = Refine(),
                       progress: Callable[[int], None] | None = None) -> Affine:
    """Symmetric InfoNCE + (1 - cosine), starting from a closed-form map."""
    import torch

    W, xm, ym = start
    steps, lr, temperature, batch = opts.steps, opts.lr, opts.temperature, opts.batch
    g = torch.Generator().manual_seed(opts.seed)
    X = torch.from_numpy(np.ascontiguousarray(x - xm, dtype=np.float32))
    Y = torch.from_numpy(np.ascontiguousarray(_unit(y)))
    w = torch.nn.Parameter(torch.from_numpy(W.copy()))
    b = torch.nn.Parameter(torch.from_numpy(ym.copy()))
    opt = torch.optim.Adam([w, b], lr=lr)
    n = len(X)
    for step in range(steps):
        idx = torch.randperm(n, generator=g)[: min(batch, n)]
        xb, yb = X[idx], Y[idx]
        p = torch.nn.functional.normalize(xb @ w + b, dim=1)
        logits = p @ yb.T / temperature
        target = torch.arange(len(idx))
        loss = (
            torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)
        ) / 2 + (1 - (p * yb).sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress:
            progress(step)
    return w.detach().numpy().astype(np.float32), xm, b.detach().numpy().astype(np.float32)


def fit_bridge(
    x: np.ndarray,
    y: np.ndarray,
    *,
    method: str = "auto",
    audio: np.ndarray | None = None,
    heldout: float = 0.1,
    refine: Refine = Refine(),
    manifest: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Bridge:
    """Fit on caption pairs x[i] (CLAP text) <-> y[i] (CLIP text).

    `audio`: CLAP audio vectors for the modality-gap estimate (none: no shift). Held-out
    captions choose the method; the chosen one is then refitted on every caption.
    """
    if method not in METHODS:
        raise UsageError(f"unknown bridge method {method!r}; choose from: {', '.join(METHODS)}")
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if len(x) != len(y) or len(x) < 16:
        raise UsageError("a bridge needs at least 16 caption pairs")
    rng = np.random.default_rng(refine.seed)
    perm = rng.permutation(len(x))
    n_val = max(8, int(len(x) * heldout))
    val, train = perm[:n_val], perm[n_val:]

    candidates: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}
    if method in ("auto", "ridge", "contrastive"):
        for a in _RIDGE_ALPHAS:
            candidates[f"ridge(alpha={a:g})"] = (fit_ridge, {"alpha": a})
    if method in ("auto", "procrustes", "contrastive"):
        candidates["procrustes"] = (fit_procrustes, {})
    scores: dict[str, tuple[float, float]] = {}
    for name, (fn, kw) in candidates.items():
        W, xm, ym = fn(x[train], y[train], **kw)
        scores[name] = retrieval_scores((x[val] - xm) @ W + ym, y[val])
    best = max(scores, key=lambda k: scores[k])
    fn, kw = candidates[best]
    chosen = best
    use_refine = method == "contrastive"
    if method in ("auto", "contrastive"):
        W, xm, ym = fn(x[train], y[train], **kw)
        W2, xm2, ym2 = refine_contrastive(x[train], y[train], (W, xm, ym), refine, progress)
        scores[best + "+contrastive"] = refined = retrieval_scores((x[val] - xm2) @ W2 + ym2, y[val])
        use_refine = use_refine or refined > scores[best]
    W, xm, ym = fn(x, y, **kw)
    if use_refine:
        W, xm, ym = refine_contrastive(x, y, (W, xm, ym), refine)
        chosen = best + "+contrastive"
    gap = np.zeros(x.shape[1], np.float32)
    gap_windows = 0 if audio is None else len(audio)
    if gap_windows:
        gap = (x.mean(0) - np.asarray(audio, np.float32).mean(0)).astype(np.float32)
    r1, cos = scores[chosen]
    info = {
        "format": FORMAT,
        **(manifest or {}),
        "method": chosen,
        "gap_windows": gap_windows,
        "heldout": {"captions": int(n_val), "r1": r1, "cos": cos, "candidates": {k: list(v) for k, v in scores.items()}},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return Bridge(W=W, x_mean=xm, y_mean=ym, gap=gap, manifest=info)
