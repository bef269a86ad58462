"""Warm text query, end to end: tokenise, encode, search, join the catalog rows.

    python scripts/bench_query.py --model ViT-B-32 [--pretrained none] [--n 10000] [--queries 50]

Builds a temporary library of N items (random unit vectors with catalog rows, as an indexed
library has), loads the model once (a warm process, like `xmr serve`), then times
`Library.search(text, k=10)` for different texts. `p50_ms`/`p90_ms` are the warm configuration:
query text encoded with fp16 weights in every linear layer of the text transformer
(`enable_fast_queries`: fbgemm, fp32 activations), as a warm server does, with the cosine of its
query vectors to fp32; `exact_fp32` is the plain fp32 encoder. Also times
the text encoder alone, with the full 77-token context and with the end-of-text prefix xmr uses
(exact; see tests/test_text_prefix.py). Prints JSON; random weights (the default) are fine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUERIES = [
    "a dog on a beach", "red car parked at night", "birthday party with balloons", "mountain lake at sunrise",
    "a cat sleeping on a sofa", "people dancing at a wedding", "snow covered forest", "a plate of pasta",
    "children playing football in a park", "old town street with cafes", "fireworks over the river",
    "a sailing boat on a calm sea", "my grandmother's garden in summer", "receipt from the hardware store",
    "whiteboard with meeting notes", "a bicycle leaning against a wall",
]


def fake_library(path: Path, encoder, n: int, seed: int = 0):
    """A library whose catalog and index hold n items, without decoding n files."""
    from indexer.catalog import File, Item
    from retrieval import Library

    lib = Library(path, encoder=encoder, create=True)
    rng = np.random.default_rng(seed)
    with lib.write_lock(), lib.Session() as s:
        lib.models.record(s)
        lib.policy.record(s)
        vecs = lib.vectors(create=True)
        files = [File(path=f"/photos/IMG_{i:07d}.jpg", modality="image", size=1, mtime_ns=0, phash="0") for i in range(n)]
        s.add_all(files)
        s.flush()
        items = [Item(file_id=f.id, modality="image", embedder="image", chunk=0) for f in files]
        s.add_all(items)
        s.flush()
        x = rng.standard_normal((n, encoder.dim)).astype(np.float32)
        vecs.add(x / np.linalg.norm(x, axis=1, keepdims=True), [it.id for it in items])
        lib.policy.maybe_reindex(s)
        lib.store.commit(s)
    return Library(path, encoder=encoder)


def percentiles(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(times, 50)) * 1e3, 2), "p90_ms": round(float(np.percentile(times, 90)) * 1e3, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--n", type=int, default=10_000, help="items in the library")
    ap.add_argument("--queries", type=int, default=48)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import torch

    from retrieval.encoders import load_encoder
    from retrieval.encoders import resolve_spec

    t = time.perf_counter()
    enc = load_encoder(resolve_spec(args.model, args.pretrained), args.device)
    load_s = time.perf_counter() - t
    texts = [QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}") for i in range(args.queries)]
    with tempfile.TemporaryDirectory() as tmp:
        lib = fake_library(Path(tmp) / "lib", enc, args.n)

        def timed() -> list[float]:
            for q in texts[:3]:  # warm-up: first calls allocate
                lib.search(q, k=10)
            times = []
            for q in texts:
                t = time.perf_counter()
                hits = lib.search(q, k=10)
                times.append(time.perf_counter() - t)
                assert len(hits) == 10
            return times

        exact = timed()
        fp32 = enc.encode_text(texts)
        t = time.perf_counter()
        fast_on = enc.enable_fast_queries()
        pack_s = time.perf_counter() - t
        fast: dict = {"available": fast_on}
        if fast_on:
            cos = np.sum(enc.encode_query(texts) * fp32, axis=1)
            fast.update(percentiles(timed()), cos_to_fp32_min=round(float(cos.min()), 7), pack_s=round(pack_s, 2))
        warm = fast if fast_on else percentiles(exact)
        parts: dict[str, list[float]] = {"tokenise": [], "encode_prefix_fp32": [], "encode_full_77_fp32": [], "search_and_join": []}
        sync = torch.cuda.synchronize if enc.device.startswith("cuda") else (lambda: None)  # GPU time, not launch time
        for q in texts:
            t = time.perf_counter()
            tokens = enc.tokenizer([q]).to(enc.device)
            parts["tokenise"].append(time.perf_counter() - t)
            with torch.inference_mode():
                t = time.perf_counter()
                v = enc._encode_text_prefix(tokens)
                sync()
                parts["encode_prefix_fp32"].append(time.perf_counter() - t)
                t = time.perf_counter()
                enc.model.encode_text(tokens, normalize=True)
                sync()
                parts["encode_full_77_fp32"].append(time.perf_counter() - t)
            t = time.perf_counter()
            lib.search(vector=v[0].float().cpu().numpy(), k=10)
            parts["search_and_join"].append(time.perf_counter() - t)
        out = {
            "model": enc.spec.describe(),
            "device": enc.device,
            "library_items": args.n,
            "index": lib.factory,
            "queries": len(texts),
            "query_weights": "fp16 (fbgemm), fp32 activations" if fast_on else "fp32",
            **{k: warm[k] for k in ("p50_ms", "p90_ms")},
            "exact_fp32": percentiles(exact),
            "fast_queries": fast,
            "parts": {k: percentiles(v) for k, v in parts.items()},
            "model_load_s": round(load_s, 2),
            "torch_threads": torch.get_num_threads(),
            "cores": os.cpu_count(),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
