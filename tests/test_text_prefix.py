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
