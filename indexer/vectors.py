"""FAISS wrapper: an index whose ids are catalog item ids, saved atomically.

Two kinds: exact `IDMap2,Flat` (and other IDMap2-wrapped indexes that need no training), and
trained IVF indexes (`IVF4096,SQ8`, `OPQ32,IVF1024,PQ32`, ...) that keep our ids in their
inverted lists, so removal works without a wrapper. Vectors are C-contiguous float32 (n, d),
unit norm; similarity is inner product (cosine).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from indexer.gpu import GpuCopy, TorchCopy, _NoGpu, torch_gpu
from indexer.refine import REFINE_FACTOR
from indexer.subsets import SubsetSearch
from indexer.topk import blas_top_k
from retrieval.errors import FaissMissingError, LibraryError, UsageError, cannot_write

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
            "FAISS is not installed. Install exactly one of: pip install 'xmr[cpu]' (faiss-cpu), "
            "pip install 'xmr[gpu]' (faiss-gpu-cu12, CUDA 12) or pip install 'xmr[gpu-cu13]' "
            "(faiss-gpu-cu13-cuvs, CUDA 13)"
        ) from None
    cvar = getattr(faiss, "cvar", None)
    if cvar is not None and getattr(cvar, "distance_compute_blas_threshold", 0) > BLAS_THRESHOLD:
        cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    return faiss


def is_ivf(factory: str) -> bool:
    return any(part.startswith("IVF") for part in factory.split(","))


def full_factory(factory: str) -> str:
    """The factory string as stored: wrapped in IDMap2 so ids are ours and removable (IVF
    indexes store ids themselves)."""
    return factory if factory.startswith("IDMap") or is_ivf(factory) else f"IDMap2,{factory}"


# An exact flat search is one BLAS product over FAISS's own storage (no copy) while the score
# matrix stays small: FAISS runs a single query on one core, about 4x slower than sgemv on both
# cores at 10k vectors here, and is no faster on batches. Larger products go to FAISS.
BLAS_MAX_SIMS = 32 * 1024 * 1024
MMAP_MIN_BYTES = 64 * 1024 * 1024


def _as_xb(x: np.ndarray, d: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"expected vectors of shape (n, {d}), got {x.shape}")
    return x


class VectorIndex:
    """The library's vectors. Mutations go to the CPU index; a GPU copy, when used, is refreshed lazily."""

    def __init__(self, index: Any, factory: str, mmapped: bool = False) -> None:
        self.faiss = import_faiss()
        self.index = index
        self.factory = factory
        self.mmapped = mmapped  # read-only: a writer loads its own copy
        self._gpu: GpuCopy | TorchCopy | None = None  # searches run on it when set (use_gpu)
        self._gpu_asked: int | None = None  # use_gpu() before torch was loaded: the device asked for
        self._ivf = self._find_ivf(index)
        self._id_cache: np.ndarray | None = None
        self._id_order: tuple[np.ndarray, np.ndarray] | None = None  # (argsort of ids, sorted ids)
        self.subsets = SubsetSearch(self)  # searches of part of the index, and their caches
        self.disk_signature: Any = None  # (inode, size, mtime) of the file it was read from
        self.dirty = True  # changed since it was read or last saved
        self.version = 0  # counts changes: what caches of this index's contents key on
        self.also_add: Any = None  # called with what `add` adds (the writer's full vectors: indexer.full_vectors)
        self.refine: Any = None  # re-ranks a compressed index's candidates exactly (indexer.refine)

    def _find_ivf(self, index: Any) -> Any:
        try:
            return self.faiss.extract_index_ivf(index)
        except (RuntimeError, AttributeError):
            return None

    @property
    def is_ivf(self) -> bool:
        return self._ivf is not None

    @property
    def nprobe(self) -> int | None:
        return int(self._ivf.nprobe) if self._ivf is not None else None

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self._ivf is not None:
            self._ivf.nprobe = int(value)
            if self._gpu is not None:
                self._gpu.set_nprobe(value)  # a search setting, not new vectors: no new upload

    @property
    def nlist(self) -> int | None:
        return int(self._ivf.nlist) if self._ivf is not None else None

    @classmethod
    def build(
        cls, factory: str, xb: np.ndarray, ids: Sequence[int], *, seed: int = 0, progress: Any = None,
    ) -> "VectorIndex":
        """A trained index (IVF...) over `xb`: trained on a sample, then every vector added."""
        xb = np.ascontiguousarray(xb, dtype=np.float32)
        ids_arr = np.ascontiguousarray(ids, dtype=np.int64)
        step = 65536

        def sample(n: int) -> np.ndarray:
            return xb[np.random.default_rng(seed).choice(len(xb), n, replace=False)] if n < len(xb) else xb

        def chunks() -> Any:
            return ((ids_arr[i : i + step], xb[i : i + step]) for i in range(0, len(xb), step))

        return cls.build_streaming(factory, xb.shape[1], sample, chunks, seed=seed, progress=progress)

    @classmethod
    def build_streaming(
        cls, factory: str, d: int, sample: Any, chunks: Any, *, seed: int = 0, progress: Any = None,
    ) -> "VectorIndex":
        """A trained index (IVF...) trained on `sample(n)` (about n vectors, drawn at random) and
        filled from `chunks()` ((ids, vectors) pairs as they come, the same each call): never
        the whole matrix at once (indexer.ivf_build)."""
        from indexer.ivf_build import train_and_fill

        return cls(train_and_fill(import_faiss(), factory, d, sample, chunks, seed, progress), factory)

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
        """Read an index; with `mmap` (readers of large files) the vectors stay on disk and are
        paged in as searches touch them, so a cold search does not read the whole file."""
        faiss = import_faiss()
        flags = 0
        if mmap:
            # IVF inverted lists and flat code arrays can both be mapped (IO_FLAG_MMAP_IFC).
            flags = faiss.IO_FLAG_MMAP if is_ivf(factory) else getattr(faiss, "IO_FLAG_MMAP_IFC", 0)
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as e:
            raise LibraryError(f"cannot read vector index {path}: {str(e).splitlines()[0]}") from None
        vecs = cls(index, factory, mmapped=bool(flags))
        vecs.dirty = False
        return vecs

    @property
    def d(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def _list_ids(self, list_no: int) -> np.ndarray:
        inv = self._ivf.invlists
        size = inv.list_size(list_no)
        if not size:
            return np.zeros(0, np.int64)
        return self.faiss.rev_swig_ptr(inv.get_ids(list_no), size).astype(np.int64, copy=True)

    def ids(self) -> np.ndarray:
        """All ids in the index (int64), in storage order."""
        if self._ivf is None:
            if self._id_cache is None:
                self._id_cache = self.faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False)
            return self._id_cache
        parts = [self._list_ids(i) for i in range(self._ivf.nlist)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def add(self, xb: np.ndarray, ids: Sequence[int]) -> None:
        xb = _as_xb(xb, self.d)
        ids_arr = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids_arr) != len(xb):
            raise ValueError(f"{len(xb)} vectors but {len(ids_arr)} ids")
        if len(xb):
            self.index.add_with_ids(xb, ids_arr)
            self._changed()
            if self.also_add is not None:
                self.also_add(xb, ids_arr)

    def remove(self, ids: Sequence[int]) -> int:
        ids_arr = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids_arr):
            return 0
        removed = int(self.index.remove_ids(ids_arr))
        if removed:
            self._changed()
        return removed

    def _changed(self) -> None:
        self.dirty = True
        if self._gpu is not None:
            self._gpu.stale = True
        self._id_cache = self._id_order = None
        self.subsets.clear()
        self.version += 1

    def reconstruct(self, item_id: int) -> np.ndarray:
        """The stored vector of one id (decoded: approximate for compressed indexes)."""
        if self._ivf is None:
            return self.index.reconstruct(int(item_id))
        return self.reconstruct_many(np.array([item_id], np.int64))[0]

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Up to n (ids, vectors) drawn at random from the index."""
        ids = self.ids()
        picks = np.sort(np.random.default_rng(seed).choice(len(ids), min(max(n, 0), len(ids)), replace=False))
        return ids[picks], self.reconstruct_many(ids[picks])

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector): what a rebuild starts from."""
        ids = self.ids().copy()
        xb = self.flat_matrix()
        if xb is not None:  # rows are in id_map order
            return ids, xb.copy()
        return ids, self.reconstruct_many(ids)

    def reconstruct_many(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of many ids at once, (len(ids), d) float32."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, self.d), np.float32)
        if self._ivf is None:
            return np.stack([self.index.reconstruct(int(i)) for i in ids])
        # No direct map is kept (it would cost ~40 bytes a vector); a temporary hash-table direct map makes one batched C++ reconstruction possible
        # (kept only for the call: it would cost ~40 bytes a vector).
        self._ivf.set_direct_map_type(self.faiss.DirectMap.Hashtable)
        try:
            out = np.ascontiguousarray(self.index.reconstruct_batch(ids), dtype=np.float32)
        finally:
            self._ivf.set_direct_map_type(self.faiss.DirectMap.NoMap)
        return out

    def flat_matrix(self) -> np.ndarray | None:
        """FAISS's own flat storage as an (n, d) numpy view (no copy), or None for other kinds."""
        if self._ivf is not None or not hasattr(self.index, "index"):
            return None
        inner = self.faiss.downcast_index(self.index.index)
        if not isinstance(inner, self.faiss.IndexFlat) or self.ntotal == 0:
            return None
        return self.faiss.rev_swig_ptr(inner.get_xb(), self.ntotal * self.d).reshape(self.ntotal, self.d)

    def use_gpu(self, device: int = 0) -> bool:
        """Search on a GPU copy from now on: FAISS's when it has GPUs, else an exact one through
        torch where CUDA is at hand; returns whether it will."""
        if GpuCopy.available(self.faiss):
            self._gpu = GpuCopy(self.faiss, device)
        elif torch_gpu():
            self._gpu = TorchCopy(f"cuda:{device}")
        else:  # torch may come later (the query encoder): asked again at each search until then
            self._gpu_asked = device
        return self._gpu is not None

    def search(self, xq: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: D (nq, k) float32 scores, I (nq, k) ids, -1 where fewer exist.
        `nprobe` overrides the IVF index's own for this search."""
        xq = _as_xb(xq, self.d)
        k = max(1, min(int(k), self.ntotal)) if self.ntotal else 1
        if self.ntotal == 0:
            return np.zeros((len(xq), 0), np.float32), np.zeros((len(xq), 0), np.int64)
        probe = min(int(nprobe), self._ivf.nlist) if nprobe is not None and self._ivf is not None else None
        if self._gpu is None and self._gpu_asked is not None and torch_gpu():
            self._gpu, self._gpu_asked = TorchCopy(f"cuda:{self._gpu_asked}"), None
        if self._gpu is not None:
            try:
                got = self._gpu.search(self, xq, k, probe if probe is not None else self.nprobe)
            except _NoGpu:
                self._gpu, got = None, None
            if got is not None:
                return got
        if self._gpu is None and len(xq) * self.ntotal <= BLAS_MAX_SIMS:
            xb = self.flat_matrix()
            if xb is not None:
                return self._blas_search(xb, xq, k)
        if self._ivf is None:
            return self.index.search(xq, k)
        return self.ivf_search(xq, k, self.faiss.SearchParametersIVF(nprobe=probe if probe is not None else self._ivf.nprobe))

    def ivf_search(self, xq: np.ndarray, k: int, params: Any) -> tuple[np.ndarray, np.ndarray]:
        """An IVF search with these parameters (nprobe, selector) on the CPU index; with `refine`,
        more candidates ordered by their kept full-precision vectors."""
        if self.refine is not None:
            _, I = self._ivf_search(xq, k * REFINE_FACTOR, params)
            return self.refine.rerank(xq, I, k)
        return self._ivf_search(xq, k, params)

    def _ivf_search(self, xq: np.ndarray, k: int, params: Any) -> tuple[np.ndarray, np.ndarray]:
        if len(xq) == 1 and self._ivf is not None:  # one query: spread its inverted lists over the cores
            self._ivf.parallel_mode = 1
            try:
                return self.index.search(xq, k, params=params)
            finally:
                self._ivf.parallel_mode = 0
        return self.index.search(xq, k, params=params)

    def present(self, ids: np.ndarray) -> np.ndarray:
        """The ones of `ids` (int64) that this index holds, in their order."""
        order, sorted_ids = self.id_order()
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        at = np.minimum(np.searchsorted(sorted_ids, ids), max(len(sorted_ids) - 1, 0))
        return ids[sorted_ids[at] == ids] if len(sorted_ids) else ids[:0]

    def id_order(self) -> tuple[np.ndarray, np.ndarray]:
        if self._id_order is None:
            ids = self.ids()
            order = np.argsort(ids, kind="stable")
            self._id_order = (order, ids[order])
        return self._id_order

    def search_subset(self, xq: np.ndarray, k: int, ids: np.ndarray, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among `ids` only (see indexer.subsets)."""
        return self.subsets.search(xq, k, ids, nprobe)

    def search_subsets(self, xq: np.ndarray, k: int, subsets: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """`search_subset` for several subsets at once (see indexer.subsets)."""
        return self.subsets.search_many(xq, k, subsets)

    def _blas_search(self, xb: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return blas_top_k(xq, xb, k, self.ids())

    def save(self, path: Path) -> None:
        """Write to a temporary name, fsync, then os.replace: readers see the old or the new file."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.faiss.write_index(self.index, str(tmp))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as e:  # faiss's failed fwrite is a RuntimeError
            raise cannot_write(path, e) from None
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

