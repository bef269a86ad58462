"""The GPU path on a real CUDA GPU (marked `gpu`): run by scripts/gpu_check.sh, where
XMR_REQUIRE_GPU=1 turns a missing GPU into a failure; skipped on machines without one. Each
test compares the GPU's answer with the CPU's for the same inputs."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval import Library
from scripts.synthetic import CONCEPTS, draw
from tests.conftest import ROOT


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _cuda() and os.environ.get("XMR_REQUIRE_GPU") != "1",
                                                  reason="no CUDA GPU here (scripts/gpu_check.sh runs these)")]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("gpu-pictures")
    rng = random.Random(11)
    for i, concept in enumerate(CONCEPTS[:8]):
        im = draw(concept, rng, size=200)
        if i == 1:
            im.save(folder / f"{i}.jpg", quality=90, progressive=True)
        elif i == 2:
            im.convert("CMYK").save(folder / f"{i}.jpg", quality=90)
        elif i == 3:
            exif = Image.Exif()
            exif[0x0112] = 8
            im.transpose(Image.Transpose.ROTATE_270).save(folder / f"{i}.jpg", quality=90, exif=exif)
        else:
            im.save(folder / f"{i}.{'png' if i == 4 else 'jpg'}", quality=90)
    (folder / "broken.jpg").write_bytes((folder / "0.jpg").read_bytes()[:500])
    (folder / "note.txt").write_text("a red circle next to a blue square", encoding="utf-8")
    return folder


def _vectors(lib: Library) -> dict[str, np.ndarray]:
    from sqlalchemy import select

    from indexer.catalog import File, Item

    with lib.Session() as s:
        rows = s.execute(select(File.path, Item.id).join(Item)).all()
    vecs = lib.vectors()
    return {Path(p).name: vecs.reconstruct_many(np.asarray([i], np.int64))[0] for p, i in rows}


def test_a_library_indexed_on_the_gpu_matches_the_cpu(tmp_path, pictures, random_model):
    """nvjpeg + fp16 on the GPU against PIL + fp32 on the CPU: the same items, vectors within
    fp16's and the decoders' differences; the broken JPEG skipped with the CPU decoder's reason."""
    out = {}
    for device in ("cpu", "cuda"):
        skipped: list[tuple[str, str]] = []
        lib = Library(tmp_path / device, model=random_model, create=True, device=device)
        lib.index([pictures], ocr=False, speech_model="none", on_skip=lambda p, r: skipped.append((Path(p).name, r)))
        assert [n for n, _ in skipped] == ["broken.jpg"] and "broken image" in skipped[0][1]
        out[device] = _vectors(lib)
    assert sorted(out["cpu"]) == sorted(out["cuda"])
    for name, v in out["cpu"].items():
        assert float(v @ out["cuda"][name]) >= 0.98, name


def test_fp16_text_and_pictures_stay_close_to_fp32(random_model):
    from retrieval.encoders import EncoderSpec, load_encoder

    cpu, gpu = (load_encoder(EncoderSpec(random_model, None), d) for d in ("cpu", "cuda"))
    texts = ["a red circle", "a photo of a dog on a beach", "INV-48213"]
    assert (np.sum(cpu.encode_text(texts) * gpu.encode_text(texts), axis=1) >= 0.999).all()
    rng = random.Random(1)
    ims = [gpu.preprocess_image(draw(c, rng, size=120)) for c in CONCEPTS[:4]]
    assert (np.sum(cpu.encode_images(ims) * gpu.encode_images(ims), axis=1) >= 0.999).all()


def test_exact_search_on_the_gpu_through_torch_equals_the_cpu():
    from indexer.gpu import TorchCopy
    from indexer.vectors import VectorIndex

    rng = np.random.default_rng(3)
    xb = rng.standard_normal((20000, 64)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    vi = VectorIndex.create(64, "Flat")
    vi.add(xb, np.arange(20000))
    xq = xb[:50]
    want_d, want_i = vi.search(xq, 10)
    vi._gpu = TorchCopy("cuda:0")
    got_d, got_i = vi.search(xq, 10)
    assert (got_i == want_i).all() and np.allclose(got_d, want_d, atol=1e-4)


def test_bench_query_runs_on_cuda(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/bench_query.py", "--device", "cuda", "--n", "2000", "--queries", "20"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["device"].startswith("cuda")
