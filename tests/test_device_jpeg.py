"""JPEGs decoded where the model runs (indexer.stages.device_jpeg), checked on the CPU with
torchvision's own decoder standing in for nvjpeg: EXIF orientation as PIL applies it, pictures
the device decoder refuses decoded on the CPU without failing their batch, a broken JPEG skipped
with the CPU decoder's reason, and a library indexed this way close to one decoded by PIL."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from indexer.kinds.image import EncodedJpeg, read_jpeg
from indexer.stages.device_jpeg import DeviceJpegs, upright
from retrieval import Library
from retrieval.errors import DecodeError
from scripts.synthetic import CONCEPTS, draw


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_applied_as_pil_applies_it(orientation):
    import torch

    rng = np.random.default_rng(orientation)
    pixels = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)  # not square: a quarter turn shows
    im = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    want = np.asarray(ImageOps.exif_transpose(im))
    got = upright(torch.from_numpy(pixels).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    assert got.shape == want.shape and (got == want).all()


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("jpegs")
    rng = random.Random(7)
    out = {}
    for name, concept in (("plain", 0), ("progressive", 3), ("turned", 5), ("cmyk", 8)):
        im = draw(CONCEPTS[concept], rng, size=160)
        p = folder / f"{name}.jpg"
        if name == "turned":  # stored sideways with the tag that turns it back
            exif = Image.Exif()
            exif[0x0112] = 6
            im.transpose(Image.Transpose.ROTATE_90).save(p, quality=92, exif=exif)
            im.save(folder / "turned-upright.jpg", quality=92)
        elif name == "cmyk":
            im.convert("CMYK").save(p, quality=92)
        else:
            im.save(p, quality=92, progressive=name == "progressive")
        out[name] = p
    (folder / "broken.jpg").write_bytes((folder / "plain.jpg").read_bytes()[:300])
    out["broken"] = folder / "broken.jpg"
    draw(CONCEPTS[2], rng, size=160).save(folder / "a.png")
    return out


def test_cmyk_and_non_jpegs_stay_with_the_cpu_decoder(jpegs):
    assert read_jpeg(str(jpegs["cmyk"])) is None
    assert read_jpeg(str(jpegs["plain"].parent / "a.png")) is None
    turned = read_jpeg(str(jpegs["turned"]))
    assert turned is not None and turned.orientation == 6


def test_refused_pictures_go_to_the_cpu_and_a_broken_one_says_why(jpegs, random_model):
    from retrieval.encoders import EncoderSpec, load_encoder
    from indexer.stages.device_jpeg import _nvjpeg

    enc = load_encoder(EncoderSpec(random_model, None), "cpu")
    batch = [read_jpeg(str(jpegs[n])) for n in ("plain", "progressive", "turned")]
    batch.append(EncodedJpeg(jpegs["broken"].read_bytes(), 1, str(jpegs["broken"])))
    calls = []

    def refuses_progressive(data, device):  # a stand-in for nvjpeg that cannot do progressive JPEGs
        calls.append(len(data))
        if any(bytes(x[:400].tolist()).find(b"\xff\xc2") >= 0 for x in data):
            raise RuntimeError("nvjpeg: unsupported JPEG")
        return _nvjpeg(data, device)

    dj = DeviceJpegs("cpu", decode=refuses_progressive)
    out = dj.inputs(batch, enc.preprocess, enc.input_size)
    assert calls[0] == 4 and dj.refused == 2  # the batch, then file by file: progressive and broken to the CPU
    assert isinstance(out[3], DecodeError) and "broken image" in str(out[3])
    assert all(x.shape == (3, enc.input_size, enc.input_size) and x.dtype.is_floating_point is False for x in out[:3])
    on_cpu = [enc.preprocess(Image.open(jpegs[n]).convert("RGB")) for n in ("plain", "progressive")]
    upright_ref = enc.preprocess(Image.open(jpegs["plain"].parent / "turned-upright.jpg").convert("RGB"))
    va = enc.encode_images(out[:3])
    vb = enc.encode_images([*on_cpu, upright_ref])
    assert (np.sum(va * vb, axis=1) >= 0.99).all()


def test_a_library_indexed_with_device_jpegs_is_close_to_pil_decoding(tmp_path, jpegs, random_model, monkeypatch):
    folder = jpegs["plain"].parent
    libs = {}
    for way in ("0", "1"):
        monkeypatch.setenv("XMR_DEVICE_JPEG", way)
        skipped: list[tuple[str, str]] = []
        lib = Library(tmp_path / f"lib{way}", model=random_model, create=True)
        lib.index([folder], ocr=False, on_skip=lambda p, r: skipped.append((Path(p).name, r)))
        assert [n for n, _ in skipped] == ["broken.jpg"] and "broken image" in skipped[0][1], skipped
        libs[way] = lib
    pil, dev = (_vectors(libs[w]) for w in ("0", "1"))
    assert sorted(pil) == sorted(dev) and len(pil) == 6
    for name in pil:
        assert float(pil[name] @ dev[name]) >= 0.98, name
    assert float(dev["turned.jpg"] @ dev["turned-upright.jpg"]) >= 0.99


def _vectors(lib: Library) -> dict[str, np.ndarray]:
    from sqlalchemy import select

    from indexer.catalog import File, Item

    with lib.Session() as s:
        rows = s.execute(select(File.path, Item.id).join(Item)).all()
    vecs = lib.vectors()
    return {Path(p).name: vecs.reconstruct_many(np.asarray([i], np.int64))[0] for p, i in rows}
