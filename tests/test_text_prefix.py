"""The end-of-text prefix encoding is exact: it equals open_clip's full 77-token encode_text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrieval.encoders import EncoderSpec, load_encoder

TEXTS = [
    "a dog",
    "x",
    "a photo of a red car parked by the sea at night, with the lights of the harbour behind it",
    "rain " * 40,  # longer than the context: truncated, its EOT at the last position
    "",
]


@pytest.mark.parametrize("spec", ["tiny", "ViT-B-32"])
def test_prefix_encoding_equals_full(spec, random_model):
    enc = load_encoder(EncoderSpec(random_model if spec == "tiny" else spec, None), "cpu")
    assert enc._prefix_ok()
    tokens = enc.tokenizer(TEXTS)
    with torch.inference_mode():
        full = enc.model.encode_text(tokens, normalize=True).numpy()
        for i in range(len(TEXTS)):  # alone (short prefix) and in the mixed batch
            alone = enc._encode_text_prefix(tokens[i : i + 1]).numpy()
            assert np.abs(alone - full[i : i + 1]).max() <= 1e-5
        batch = enc._encode_text_prefix(tokens).numpy()
    assert np.abs(batch - full).max() <= 1e-5
    assert np.abs(enc.encode_text(TEXTS) - full).max() <= 1e-5


@pytest.mark.parametrize("spec", ["tiny", "ViT-B-32"])
def test_fast_query_encoder_stays_close_to_fp32(spec, random_model):
    """The warm-process query encoder (fp16 weights, fp32 activations): cosine >= 0.99999."""
    enc = load_encoder(EncoderSpec(random_model if spec == "tiny" else spec, None), "cpu")
    fp32 = enc.encode_text(TEXTS)
    assert np.array_equal(enc.encode_query(TEXTS), fp32)  # off by default: exact
    assert enc.enable_fast_queries()
    fast = enc.encode_query(TEXTS)
    assert np.sum(fast * fp32, axis=1).min() >= 0.99999
    assert np.abs(fast - fp32).max() > 0  # it really is another computation
    for i, text in enumerate(TEXTS):  # alone, as a server sees them
        assert float(enc.encode_query([text])[0] @ fp32[i]) >= 0.99999
    assert np.array_equal(enc.encode_text(TEXTS), fp32)  # documents stay fp32
