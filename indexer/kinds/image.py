"""Pictures: JPEG, PNG, GIF, BMP, TIFF, WebP (by content) and a few more by extension.

One item per picture, embedded by the image encoder; the words on it, when OCR is on and it
has some (indexer.ocr), are its snippet, found by the full-text index. Decoding is guarded: EXIF orientation
applied, decompression bombs refused, JPEGs decoded at the smallest DCT scale that still
covers the model's input.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Iterator

from indexer.facts import EXIF_ORIENTATION
from indexer.kinds.base import DecodeContext, MediaKind, Segment
from retrieval.errors import DecodeError

# Magic numbers of image formats PIL reads: content wins over the extension.
_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF little endian
    b"MM\x00*",  # TIFF big endian
)


def load_image(path: str, min_size: int | None = None, long_side: int | None = None) -> Any:  # -> PIL.Image.Image
    """Open, decode, apply EXIF orientation, convert to RGB.

    With `min_size`, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps
    both sides >= min_size (PIL's `draft`): the model sees min_size pixels anyway, and a 12 MP
    photo decodes about 6x faster. The result differs from a full decode + resize by a little
    resampling detail only (tests/test_draft.py states and checks the tolerance). With
    `long_side`, the smallest that keeps the long side >= long_side.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # A "possible decompression bomb" warning is treated as the error it may be.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if min_size and im.format == "JPEG":
                    im.draft("RGB", (min_size, min_size))
                elif long_side and im.format == "JPEG":
                    shrink = long_side / max(im.size)
                    im.draft("RGB", (round(im.width * shrink), round(im.height * shrink)))
                im.load()
                im = ImageOps.exif_transpose(im)
                return im.convert("RGB")
    except UnidentifiedImageError:
        raise DecodeError("not an image PIL can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DecodeError(f"image too large to decode safely ({e})") from None
    except FileNotFoundError:
        raise DecodeError("file vanished") from None
    except PermissionError:
        raise DecodeError("permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DecodeError(f"broken image ({e})") from None


@dataclass(frozen=True)
class EncodedJpeg:
    """A JPEG's bytes and EXIF orientation, for a decoder on the GPU (nvjpeg: it ignores EXIF).
    `path` names it in a "skipping" line when it cannot be decoded there or on the CPU."""

    data: bytes
    orientation: int
    path: str


def read_jpeg(path: str) -> EncodedJpeg | None:
    """A JPEG as bytes, for decoding on the GPU; None when it should be decoded on the CPU
    (not a JPEG, CMYK or grey, too large to decode safely: load_image says why)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format != "JPEG" or im.mode != "RGB" or im.width * im.height > (Image.MAX_IMAGE_PIXELS or 1 << 62):
                return None
            orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
        with open(path, "rb") as f:
            return EncodedJpeg(f.read(), orientation if 1 <= orientation <= 8 else 1, path)
    except Exception:  # noqa: BLE001 - whatever is wrong with it, the CPU decoder says it
        return None


class ImageKind(MediaKind):
    name = "image"
    label = "Pictures"
    noun = "picture"
    extensions = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif", ".ppm", ".pgm"})
    view = "thumbnail"

    def sniff(self, head: bytes, ext: str) -> bool:
        return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")

    location = ("snippet", "confidence")  # the words read off it, if any
    readers = ("ocr",)

    def decode(self, path: str, ctx: DecodeContext) -> Iterator[Segment]:
        reader = ctx.ocr()
        side = getattr(ctx, "detail_side", None)
        if reader is None:
            # With the model on a GPU, a JPEG is decoded there (nvjpeg), in batches: only its bytes
            # go (the face model decodes its own copy from the file).
            jpeg = read_jpeg(path) if getattr(ctx, "device_jpeg", False) else None
            if jpeg is not None or side is None:
                yield Segment(jpeg if jpeg is not None else load_image(path, ctx.image_size), embedder="image")
                return
        from indexer.ocr import OCR_SIDE, likely_text  # noqa: F401 - OCR_SIDE below

        # The text test looks at the copy decoded for the model (a 12 MP JPEG's 1/8 scale:
        # 500 x 375), so vectors are the same with OCR on or off; only a picture that may hold
        # print is decoded again, larger, and read.
        picture = load_image(path, ctx.image_size)
        words = larger = None
        if reader is not None and likely_text(picture):
            larger = picture if max(picture.size) >= OCR_SIDE else load_image(path, OCR_SIDE)
            words = reader.read(larger)
        detail = None
        if side is not None:  # faces: a copy of their own, from OCR's when it read one
            detail = next((p for p in (picture, larger) if p is not None and max(p.size) >= side), None) \
                or load_image(path, long_side=side)
        yield Segment(picture, embedder="image", snippet=words.text if words else None,
                      confidence=words.confidence if words else None, detail=detail)

    def thumbnail(self, path: str, size: int, at: float | None = None) -> Any:
        return load_image(path, min_size=size)

    def facts(self, path: str) -> dict[str, Any]:
        from indexer.facts import image_facts

        return image_facts(path)
