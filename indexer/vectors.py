"""FAISS wrapper: an IDMap2 index whose ids are catalog item ids, saved atomically.

Vectors are C-contiguous float32 (n, d), unit norm; similarity is inner product (cosine).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from retrieval.errors import FaissMissingError, LibraryError, UsageError

log = logging.getLogger(__name__)

DEFAULT_FACTORY = "Flat"


# Query batches at least this large use BLAS for exact search. faiss 1.15 ships 128000, which
# keeps every realistic batch on its per-query loop: 6-9x slower than BLAS for 200 queries
# over 10k-100k vectors here (scripts/bench_search.py). 20 was faiss's long-standing default.
BLAS_THRESHOLD = 20


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise FaissMissingError(
            "FAISS is not installed. Install exactly one of: pip install 'xmr[cpu]' (faiss-cpu) "
            "or pip install 'xmr[gpu]' (faiss-gpu)"
        ) from None
    cvar = getattr(faiss, "cvar", None)
    if cvar is not None and getattr(cvar, "distance_compute_blas_threshold", 0) > BLAS_THRESHOLD:
        cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    return faiss


def full_factory(factory: str) -> str:
    """The factory string as stored: always wrapped in IDMap2 so ids are ours and removable."""
    return factory if factory.startswith("IDMap") else f"IDMap2,{factory}"


def _as_xb(x: np.ndarray, d: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"expected vectors of shape (n, {d}), got {x.shape}")
    return x


class VectorIndex:
    """The library's vectors. Mutations go to the CPU index; a GPU copy, when used, is refreshed lazily."""

    def __init__(self, index: Any, factory: str) -> None:
        self.faiss = import_faiss()
        self.index = index
        self.factory = factory
        self._gpu: Any = None
        self._gpu_device: int | None = None
        self._gpu_stale = True

    @classmethod
    def create(cls, d: int, factory: str = DEFAULT_FACTORY) -> "VectorIndex":
        faiss = import_faiss()
        spec = full_factory(factory)
        try:
            index = faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise UsageError(f"bad FAISS factory string {factory!r}: {str(e).splitlines()[0]}") from None
        if not index.is_trained:
            raise UsageError(
                f"FAISS index {factory!r} needs training; this version builds indexes that do not "
                "(e.g. Flat)"
            )
        try:  # deleted and changed files must be removable
            index.remove_ids(np.zeros(0, dtype=np.int64))
        except RuntimeError:
            raise UsageError(f"FAISS index {factory!r} cannot remove vectors; use e.g. Flat or SQ8") from None
        return cls(index, spec)

    @classmethod
    def load(cls, path: Path, factory: str, mmap: bool = False) -> "VectorIndex":
        faiss = import_faiss()
        flags = faiss.IO_FLAG_MMAP if mmap else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as e:
            raise LibraryError(f"cannot read vector index {path}: {str(e).splitlines()[0]}") from None
        return cls(index, factory)

    @property
    def d(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        """All ids in the index (int64), in storage order."""
        return self.faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False)

    def add(self, xb: np.ndarray, ids: Sequence[int]) -> None:
        xb = _as_xb(xb, self.d)
        ids_arr = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids_arr) != len(xb):
            raise ValueError(f"{len(xb)} vectors but {len(ids_arr)} ids")
        if len(xb):
            self.index.add_with_ids(xb, ids_arr)
            self._gpu_stale = True

    def remove(self, ids: Sequence[int]) -> int:
        ids_arr = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids_arr):
            return 0
        self._gpu_stale = True
        return int(self.index.remove_ids(ids_arr))

    def reconstruct(self, item_id: int) -> np.ndarray:
        return self.index.reconstruct(int(item_id))

    def use_gpu(self, device: int = 0) -> bool:
        """Search on a GPU copy from now on, when faiss has GPUs; returns whether it will."""
        faiss = self.faiss
        # faiss-cpu has no GPU symbols, and StandardGpuResources constructs even with no GPU.
        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() <= 0:
            return False
        self._gpu_device = device
        self._gpu_stale = True
        return True

    def _searcher(self) -> Any:
        if self._gpu_device is None:
            return self.index
        if self._gpu_stale:
            try:
                res = getattr(self, "_gpu_res", None) or self.faiss.StandardGpuResources()
                self._gpu_res = res
                self._gpu = self.faiss.index_cpu_to_gpu(res, self._gpu_device, self.index)
                self._gpu_stale = False
            except RuntimeError as e:  # index type without a GPU implementation
                log.warning("FAISS GPU copy failed (%s); searching on the CPU", e)
                self._gpu_device = None
                return self.index
        return self._gpu

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: D (nq, k) float32 scores, I (nq, k) ids, -1 where fewer exist."""
        xq = _as_xb(xq, self.d)
        k = max(1, min(int(k), self.ntotal)) if self.ntotal else 1
        if self.ntotal == 0:
            return np.zeros((len(xq), 0), np.float32), np.zeros((len(xq), 0), np.int64)
        return self._searcher().search(xq, k)

    def save(self, path: Path) -> None:
        """Write to a temporary name, fsync, then os.replace: readers see the old or the new file."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.faiss.write_index(self.index, str(tmp))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        try:
            dfd = os.open(path.parent, os.O_RDONLY)
        except OSError:  # not possible on some platforms; the replace itself is still atomic
            return
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
