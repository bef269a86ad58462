"""What the indexer stores must equal open_clip's own reference for the same weights."""

from __future__ import annotations

import numpy as np
import open_clip
import torch
from PIL import Image
from sqlalchemy import select

from indexer.catalog import File, Item
from retrieval import Library
from scripts.synthetic import CONCEPTS, draw


def _stored(lib: Library, path) -> list[np.ndarray]:
    with lib.Session() as s:
        ids = s.scalars(select(Item.id).join(File).where(File.path == str(path)).order_by(Item.chunk)).all()
    return [lib.vectors().reconstruct(i) for i in ids]


def test_stored_vectors_equal_open_clip_reference(tmp_path, random_model):
    import random

    media = tmp_path / "media"
    media.mkdir()
    rng = random.Random(3)
    draw(CONCEPTS[5], rng).save(media / "a.png")
    draw(CONCEPTS[9], rng, size=200).save(media / "b.jpg", quality=95)
    (media / "note.txt").write_text("a purple star next to a green circle", encoding="utf-8")

    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([media])
    # On CUDA xmr encodes under fp16 autocast (tensor cores), so the fp32 reference is met to
    # fp16 precision there; on the CPU it is fp32 throughout and met to 1e-5.
    tol = 2e-3 if lib.encoder.device.startswith("cuda") else 1e-5

    model, _, preprocess = open_clip.create_model_and_transforms(random_model)
    tokenizer = open_clip.get_tokenizer(random_model)
    model.eval()
    with torch.no_grad():
        for name in ("a.png", "b.jpg"):
            img = Image.open(media / name)
            if name.endswith(".jpg"):  # xmr decodes JPEGs at the model's input size (tests/test_draft.py)
                img.draft("RGB", (32, 32))
            ref = model.encode_image(preprocess(img).unsqueeze(0), normalize=True)[0].numpy()
            (got,) = _stored(lib, media / name)
            assert np.abs(got - ref).max() <= tol and float(got @ ref) >= 1 - tol
            assert abs(np.linalg.norm(got) - 1) < 1e-5
        ref = model.encode_text(tokenizer(["a purple star next to a green circle"]), normalize=True)[0].numpy()
        (got,) = _stored(lib, media / "note.txt")
        assert np.abs(got - ref).max() <= tol


def test_exif_orientation_is_applied(tmp_path, random_model):
    """A sideways-stored JPEG with an orientation tag is encoded upright."""
    import random

    im = draw(CONCEPTS[0], random.Random(0), size=None)
    im = im.resize((120, 80))
    upright = tmp_path / "upright"
    sideways = tmp_path / "sideways"
    upright.mkdir()
    sideways.mkdir()
    im.save(upright / "x.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    im.transpose(Image.Transpose.ROTATE_90).save(sideways / "x.png", exif=exif)
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([upright, sideways])
    (a,) = _stored(lib, upright / "x.png")
    (b,) = _stored(lib, sideways / "x.png")
    assert np.abs(a - b).max() <= 1e-5
