"""The GPU copy of a library's index (faiss-gpu with a GPU present), used for searches.

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

    def search(self, cpu_index: Any, xq: np.ndarray, k: int, nprobe: int | None) -> tuple[np.ndarray, np.ndarray] | None:
        """D, I from the GPU copy, or None when the CPU must answer (k over the GPU's limit, or an
        index type without a GPU implementation: then the copy is given up for good)."""
        if k > GPU_MAX_K:
            return None
        try:
            index = self._upload(cpu_index, nprobe)
        except RuntimeError as e:
            log.warning("FAISS GPU copy failed (%s); searching on the CPU", e)
            raise _NoGpu from None
        return index.search(xq, k)


class _NoGpu(Exception):
    """This index cannot be searched on a GPU."""
