"""The bridge fitter on planted data, its manifest checks, and the caption corpus."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.encoders.bridge import (
    Bridge,
    BridgeMismatchError,
    Refine,
    _unit,
    fit_bridge,
    read_captions,
    retrieval_scores,
)

CLAP = {"audio_model": "/models/clap-a", "weights_sha256": "aa", "revision": None, "dim": 32}
CLIP = {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "weights_sha256": None, "dim": 64}


def planted(n: int, rng: np.random.Generator, W: np.ndarray, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    x = _unit(rng.normal(size=(n, W.shape[0])))
    return x, _unit(x @ W + noise * rng.normal(size=(n, W.shape[1])))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(32, 64))
    return planted(2000, rng, W), planted(400, rng, W)


def test_closed_form_recovers_a_planted_map(data):
    (x, y), (xt, yt) = data
    for method in ("ridge", "procrustes"):
        b = fit_bridge(x, y, method=method)
        r1, cos = retrieval_scores(b.map_text_space(xt), yt)
        assert r1 >= 0.99, (method, r1)
        assert b.manifest["heldout"]["r1"] >= 0.99
    # a random map does not: the score is not trivially 1
    rand = Bridge(W=np.random.default_rng(1).normal(size=(32, 64)).astype(np.float32),
                  x_mean=np.zeros(32, np.float32), y_mean=np.zeros(64, np.float32), gap=np.zeros(32, np.float32))
    assert retrieval_scores(rand.map_text_space(xt), yt)[0] < 0.2


def test_contrastive_refinement_is_not_worse(data):
    (x, y), (xt, yt) = data
    ridge = fit_bridge(x, y, method="ridge")
    refined = fit_bridge(x, y, method="contrastive", refine=Refine(steps=150))
    assert refined.manifest["method"].endswith("+contrastive")
    r1_ridge, cos_ridge = retrieval_scores(ridge.map_text_space(xt), yt)
    r1_ref, cos_ref = retrieval_scores(refined.map_text_space(xt), yt)
    assert r1_ref >= r1_ridge - 1e-9
    assert cos_ref >= cos_ridge - 0.01
    auto = fit_bridge(x, y, method="auto", refine=Refine(steps=150))
    assert retrieval_scores(auto.map_text_space(xt), yt)[0] >= r1_ridge - 1e-9


def test_modality_gap_is_removed_before_mapping(data):
    (x, y), _ = data
    gap = _unit(np.random.default_rng(2).normal(size=32)) * 0.8
    audio = _unit(x[:300] - gap)  # "sounds" of the first 300 captions, offset like a modality gap
    with_gap = fit_bridge(x, y, method="ridge", audio=audio)
    without = fit_bridge(x, y, method="ridge")
    assert with_gap.manifest["gap_windows"] == 300
    r1_with = retrieval_scores(with_gap.map_audio(audio), y[:300])[0]
    r1_without = retrieval_scores(without.map_audio(audio), y[:300])[0]
    assert r1_with > r1_without
    assert r1_with >= 0.9


def test_a_bridge_refuses_another_pair(tmp_path, data):
    (x, y), _ = data
    b = fit_bridge(x, y, method="ridge", manifest={"clap": CLAP, "clip": CLIP})
    path = tmp_path / "bridge.safetensors"
    b.save(path)
    loaded = Bridge.load(path, CLAP, CLIP)
    assert np.array_equal(loaded.W, b.W) and loaded.sha256 == b.sha256
    assert loaded.describe()["method"] == "ridge(alpha=0.01)" or loaded.describe()["method"].startswith("ridge")
    with pytest.raises(BridgeMismatchError, match="clap-a"):
        Bridge.load(path, {**CLAP, "weights_sha256": "bb"}, CLIP)
    with pytest.raises(BridgeMismatchError, match="ViT-B-32"):
        Bridge.load(path, CLAP, {**CLIP, "model": "ViT-L-14"})
    (tmp_path / "junk.safetensors").write_bytes(b"not a bridge")
    from retrieval.errors import LibraryError

    with pytest.raises(LibraryError, match="not a readable xmr bridge"):
        Bridge.load(tmp_path / "junk.safetensors")


def test_default_caption_corpus_is_large_and_free_of_evaluation_prompts():
    captions = read_captions()
    assert len(captions) >= 5000
    assert len(set(captions)) == len(captions)
    lowered = [c.lower() for c in captions]
    assert not any(c.startswith(("the sound of a", "a sound of a", "this is a sound of")) for c in lowered)
    # everyday sources are covered
    for word in ("dog", "rain", "siren", "piano", "engine", "baby", "door"):
        assert any(word in c for c in lowered), word
