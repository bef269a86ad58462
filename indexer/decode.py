"""Path -> what an encoder eats: a PIL image, or text split into chunks that fit the context.

Every failure raises DecodeError(reason); the pipeline prints "skipping PATH: reason".
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass
from typing import Callable

from retrieval.errors import DecodeError

MAX_TEXT_BYTES = 16 * 1024 * 1024
_PARTIAL_BLOCK = 64 * 1024
_WORD = re.compile(r"\S+")
_SENTENCE_END = (".", "!", "?", ":", ";")


def partial_hash(path: str, size: int) -> str:
    """Size + first and last 64 KiB: cheap, and enough to recognise a file that was moved."""
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(_PARTIAL_BLOCK))
        if size > 2 * _PARTIAL_BLOCK:
            f.seek(size - _PARTIAL_BLOCK)
            h.update(f.read(_PARTIAL_BLOCK))
    return h.hexdigest()


def load_image(path: str, min_size: int | None = None):  # -> PIL.Image.Image
    """Open, decode, apply EXIF orientation, convert to RGB.

    With `min_size`, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps
    both sides >= min_size (PIL's `draft`): the model sees min_size pixels anyway, and a 12 MP
    photo decodes about 6x faster. The result differs from a full decode + resize by a little
    resampling detail only (tests/test_draft.py states and checks the tolerance).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # A "possible decompression bomb" warning is treated as the error it may be.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if min_size and im.format == "JPEG":
                    im.draft("RGB", (min_size, min_size))
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


def read_text(path: str) -> str:
    """UTF-8 text (BOM tolerated); binary or undecodable files are refused with a reason."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT_BYTES + 1)
    except FileNotFoundError:
        raise DecodeError("file vanished") from None
    except PermissionError:
        raise DecodeError("permission denied") from None
    except OSError as e:
        raise DecodeError(e.strerror or str(e)) from None
    if len(data) > MAX_TEXT_BYTES:
        raise DecodeError(f"text file larger than {MAX_TEXT_BYTES // (1024 * 1024)} MiB")
    if b"\x00" in data[:8192]:
        raise DecodeError("binary file, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DecodeError(f"not UTF-8 text (invalid byte at offset {e.start})") from None
    if not text.strip():
        raise DecodeError("no text in file")
    return text


@dataclass(frozen=True)
class Chunk:
    index: int
    char_start: int
    char_end: int
    text: str


def chunk_text(text: str, count_tokens: Callable[[str], int], context_length: int) -> list[Chunk]:
    """Split into consecutive chunks of whole words, each within `context_length` tokens.

    Token counts come from the encoder's own tokenizer. Per-word counts give a fast estimate,
    each chunk is then checked as a whole (tokenizers are not always additive) and trimmed.
    A chunk that fills up breaks after the last sentence end in its second half, if any.
    """
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    specials = count_tokens("")
    cost = [max(1, count_tokens(text[s:e]) - specials) for s, e in words]
    chunks: list[Chunk] = []
    i = 0
    while i < len(words):
        j, used = i, specials
        while j < len(words) and used + cost[j] <= context_length:
            used += cost[j]
            j += 1
        j = max(j, i + 1)  # a single word longer than the context still forms a chunk
        while j > i + 1 and count_tokens(text[words[i][0] : words[j - 1][1]]) > context_length:
            j -= 1
        if j < len(words):
            for b in range(j - 1, i + (j - i) // 2, -1):
                if text[words[b][1] - 1] in _SENTENCE_END:
                    j = b + 1
                    break
        start, end = words[i][0], words[j - 1][1]
        chunks.append(Chunk(len(chunks), start, end, text[start:end]))
        i = j
    return chunks
