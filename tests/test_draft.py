"""Draft JPEG decoding (DCT scaling to >= the model's input size) against a full decode.

Stated tolerance: the stored vector's cosine to the full-decode vector is >= 0.999, and the
preprocessed pixels differ by <= 0.02 on average (in the model's normalised units).
Measured: cosine >= 0.99994 (ViT-B-32) and >= 0.999999 (the demo model); 12 MP decode 6.6x faster.
"""

from __future__ import annotations

import pytest

from indexer.kinds.image import load_image
from retrieval.encoders import EncoderSpec, load_encoder
from scripts.photos import photo

SIZES = [(4000, 3000), (2400, 1800), (3000, 4000), (1000, 750), (300, 200)]


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jpegs")
    paths = []
    for i, (w, h) in enumerate(SIZES):
        p = folder / f"p{i}.jpg"
        photo(w, h, seed=i).save(p, quality=90)
        paths.append(str(p))
    return paths


@pytest.mark.parametrize("which", ["ViT-B-32", "trained"])
def test_draft_decoding_stays_within_tolerance(jpegs, which, request):
    spec = EncoderSpec("ViT-B-32", None) if which == "ViT-B-32" else EncoderSpec(request.getfixturevalue("trained_model"), None)
    enc = load_encoder(spec, "cpu")
    for p in jpegs:
        draft_img = load_image(p, enc.input_size)
        full_img = load_image(p)
        assert min(draft_img.size) >= min(enc.input_size, min(full_img.size))
        a, b = enc.preprocess_image(full_img), enc.preprocess_image(draft_img)
        na, nb = enc.model_input([a]), enc.model_input([b])  # as the model sees them: normalised floats
        assert float((na - nb).abs().mean()) <= 0.02, p
        va, vb = enc.encode_images([a]), enc.encode_images([b])
        assert float((va * vb).sum()) >= 0.999, p


def test_draft_really_decodes_less(jpegs):
    from PIL import Image

    with Image.open(jpegs[0]) as im:
        assert im.size == (4000, 3000)
    small = load_image(jpegs[0], 224)
    assert small.size == (500, 375)  # 1/8 scale: the smallest with both sides >= 224
    assert load_image(jpegs[0]).size == (4000, 3000)
