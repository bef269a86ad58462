"""The GPU copy of a library's index, used for searches: FAISS's own (faiss-gpu with a GPU
present), or, where the installed faiss has no GPU support, the vectors as one matrix in GPU
memory searched exactly with torch (`TorchCopy`).

Mutations go to the CPU index, and the copy is uploaded again lazily, at the next search after
a change. A change of `nprobe` is not a change of the vectors: it is set on the copy in place.
FAISS's GPU indexes take k and nprobe up to 2048 only; a search asking for more runs on the CPU.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

GPU_MAX_K = 2048  # faiss/gpu/utils/DeviceDefs: GPU_MAX_SELECTION_K
GPU_MAX_NPROBE = 2048


class GpuCopy:
    def __init__(self, faiss: Any, device: int) -> None:
        self.faiss, self.device = faiss, device
        self._res: Any = None
        self._index: Any = None
        self.stale = True
        self.uploads = 0

    @staticmethod
    def available(faiss: Any) -> bool:
        """faiss-cpu has no GPU symbols, and StandardGpuResources constructs even with no GPU."""
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0

    def _upload(self, cpu_index: Any, nprobe: int | None) -> Any:
        if self.stale or self._index is None:
            self._res = self._res or self.faiss.StandardGpuResources()
            self._index = self.faiss.index_cpu_to_gpu(self._res, self.device, cpu_index)
            self.stale = False
            self.uploads += 1
        if nprobe is not None:
            self.set_nprobe(nprobe)
        return self._index

    def set_nprobe(self, nprobe: int) -> None:
        """On the copy in place (no new upload), within what GPU indexes accept."""
        if self._index is not None:
            self.faiss.GpuParameterSpace().set_index_parameter(self._index, "nprobe", min(int(nprobe), GPU_MAX_NPROBE))

    def search(self, source: Any, xq: np.ndarray, k: int, nprobe: int | None) -> tuple[np.ndarray, np.ndarray] | None:
        """D, I from the GPU copy of `source` (a VectorIndex), or None when the CPU must answer (k
        over the GPU's limit, or an index type without a GPU implementation: then the copy is
        given up for good)."""
        if k > GPU_MAX_K:
            return None
        try:
            index = self._upload(source.index, nprobe)
        except RuntimeError as e:
            log.warning("FAISS GPU copy failed (%s); searching on the CPU", e)
            raise _NoGpu from None
        return index.search(xq, k)


class _NoGpu(Exception):
    """This index cannot be searched on a GPU."""


# Share of the GPU's free memory the matrix may take: the model and its batches need the rest.
TORCH_COPY_SHARE = 0.25


class TorchCopy:
    """Exact search over every vector on a GPU with torch: scores by one matrix product in
    float32 (the CPU's exact search, to rounding), top-k there, only k results copied back.
    Uploaded again at the first search after a change, like GpuCopy."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.stale = True
        self.uploads = 0
        self._xb: Any = None
        self._ids: Any = None

    @staticmethod
    def fits(n: int, d: int, device: str) -> bool:
        """Whether n x d float32 vectors fit the share of the device's free memory."""
        import torch

        if not device.startswith("cuda"):
            return True
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return n * d * 4 <= TORCH_COPY_SHARE * free

    def set_nprobe(self, nprobe: int) -> None:
        """Exact: nothing to probe."""

    def search(self, source: Any, xq: np.ndarray, k: int, nprobe: int | None) -> tuple[np.ndarray, np.ndarray] | None:
        import torch

        if self.stale or self._xb is None:
            ids, xb = source.all_vectors()
            if not self.fits(len(ids), source.d, self.device):
                raise _NoGpu
            self._xb = torch.from_numpy(np.ascontiguousarray(xb, np.float32)).to(self.device)
            self._ids = torch.from_numpy(np.ascontiguousarray(ids, np.int64)).to(self.device)
            self.stale, self.uploads = False, self.uploads + 1
        with torch.inference_mode():
            q = torch.from_numpy(np.ascontiguousarray(xq, np.float32)).to(self.device)
            scores, at = torch.topk(q @ self._xb.T, min(k, self._xb.shape[0]), dim=1)
            return scores.cpu().numpy(), self._ids[at].cpu().numpy()


def torch_gpu() -> bool:
    """CUDA through a torch this process has already loaded (for its model): importing torch
    only to search would cost commands that never use it a second or two."""
    import sys

    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available())
