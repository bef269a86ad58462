"""JPEGs decoded where the model runs: on a GPU with nvjpeg, in batches
(`torchvision.io.decode_jpeg(..., device="cuda")`), turned upright by their EXIF orientation
(nvjpeg ignores it), resized and cropped there by the model's own transform. Whatever the device
decoder refuses (a CMYK or otherwise unusual JPEG, a broken file) is decoded on the CPU, file by
file, so one odd picture never fails a batch; a file neither can decode is reported with the
CPU decoder's reason."""

from __future__ import annotations

import io
import logging
from typing import Any, Callable, Sequence

from indexer.kinds.image import EncodedJpeg, load_image
from retrieval.errors import DecodeError

log = logging.getLogger("xmr")

DecodeFn = Callable[[list[Any], str], list[Any]]


def _nvjpeg(data: list[Any], device: str) -> list[Any]:
    import warnings

    with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec; 0.2x is what GPU images carry
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg

        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))


def upright(x: Any, orientation: int) -> Any:
    """A CHW picture as EXIF `orientation` says it is seen (PIL's ImageOps.exif_transpose)."""
    h, w = 1, 2
    if orientation == 2:
        return x.flip(w)
    if orientation == 3:
        return x.flip(h).flip(w)
    if orientation == 4:
        return x.flip(h)
    if orientation == 5:
        return x.transpose(h, w)
    if orientation == 6:  # PIL's ROTATE_270: a quarter turn clockwise
        return x.rot90(-1, (h, w))
    if orientation == 7:
        return x.transpose(h, w).flip(h).flip(w)
    if orientation == 8:  # PIL's ROTATE_90: a quarter turn counter-clockwise
        return x.rot90(1, (h, w))
    return x


class DeviceJpegs:
    """Turns EncodedJpegs into one model's input tensors (uint8 CHW, on `device` where decoded
    there). `decode` stands in for nvjpeg in tests."""

    def __init__(self, device: str, decode: DecodeFn | None = None) -> None:
        self.device, self.decode = device, decode or _nvjpeg
        self.refused = 0  # pictures the device decoder gave to the CPU

    def inputs(self, jpegs: Sequence[EncodedJpeg], preprocess: Any, image_size: int | None) -> list[Any]:
        """Each picture as `preprocess` makes it (its steps before PILToTensor run on the device),
        or the DecodeError that says why it cannot be read."""
        decoded = self._decode_all(jpegs)
        steps = _tensor_steps(preprocess)
        out: list[Any] = []
        for jpeg, x in zip(jpegs, decoded):
            if x is None:  # refused on the device: the CPU decodes it, as without a GPU
                try:
                    out.append(preprocess(load_image(io.BytesIO(jpeg.data), image_size)))  # type: ignore[arg-type]
                except DecodeError as e:
                    out.append(e)
                continue
            x = upright(x, jpeg.orientation)
            for step in steps:
                x = step(x)
            out.append(x)
        return out

    def _decode_all(self, jpegs: Sequence[EncodedJpeg]) -> list[Any]:
        import torch

        data = [torch.frombuffer(bytearray(j.data), dtype=torch.uint8) for j in jpegs]
        try:
            return self.decode(data, self.device)
        except Exception:  # noqa: BLE001 - one picture it cannot do fails the whole batch call
            pass
        out = []
        for x in data:  # file by file: only those it refuses go to the CPU
            try:
                out.append(self.decode([x], self.device)[0])
            except Exception:  # noqa: BLE001
                self.refused += 1
                out.append(None)
        return out


def _tensor_steps(preprocess: Any) -> list[Any]:
    """The steps of a PIL -> uint8 transform (retrieval.encoders.clip.split_preprocess) that work
    on tensors as well: all but the last, which makes the tensor from a PIL image."""
    steps = list(getattr(preprocess, "transforms", []))
    if not steps or type(steps[-1]).__name__ != "PILToTensor":
        raise DecodeError("this model's picture transform cannot run on decoded tensors")
    return [s for s in steps[:-1] if type(s).__name__ != "MaybeConvertMode"]
