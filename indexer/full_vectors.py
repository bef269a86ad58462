"""The library's vectors at full precision, kept beside the FAISS index, so that a rebuild into
another index type never starts from lossy codes (an SQ8 or PQ index's reconstructions).

Two append-only files, `full-N.vec` (rows of d numbers, float16 by default: half of float32's
disk, within 1e-3 of it) and `full-N.ids` (each row's item id, int64). The catalog records how
many rows are committed (meta "full_vectors": {"name", "rows", "d", "dtype"}), in the commit
that commits those items: rows appended by a run killed before its commit lie beyond that count,
and the next writer cuts them off. Rows of items since deleted stay (no compaction yet): readers
of the rows keep only ids the catalog still holds. Writers read these files for rebuilds, and
searches of a compressed index for re-ranking (indexer.refine).

    10,000,000 vectors of 512 dimensions: 10.2 GB (float16) + 80 MB of ids on disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from sqlalchemy.orm import Session

from indexer.catalog import get_meta, set_meta
from retrieval.errors import cannot_write

META = "full_vectors"
DTYPES = ("float16", "float32")
CHUNK_BYTES = 32 * 2**20  # of float32 a chunk: 16k rows at d = 512, small next to any index it fills


def chunk_rows(d: int) -> int:
    return max(1024, CHUNK_BYTES // (4 * max(d, 1)))


class FullVectors:
    """The committed rows of a library's full-precision vectors, and those appended since."""

    def __init__(self, folder: Path, d: int, dtype: str = "float16", name: str = "full-1", rows: int = 0,
                 complete: bool = True) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r}; available: {', '.join(DTYPES)}")
        self.folder, self.d, self.dtype, self.name, self.committed = folder, d, np.dtype(dtype), name, rows
        # Holds every item's vector: begun with the library, or from an exact index. A library
        # whose index was already compressed when this began is not (its rebuilds read the codes).
        self.complete = complete
        self.pending = 0  # rows appended since the last commit

    @classmethod
    def of(cls, folder: Path, session: Session, d: int) -> FullVectors | None:
        """The library's store as its last commit left it (None before its first row)."""
        meta = get_meta(session, META)
        if not meta:
            return None
        if int(meta["d"]) != d:
            raise ValueError(f"the full vectors have {meta['d']} dimensions, not {d}")
        return cls(folder, d, meta["dtype"], meta["name"], int(meta["rows"]), bool(meta.get("complete", True)))

    @classmethod
    def begin(cls, folder: Path, session: Session, vecs: Any) -> FullVectors:
        """The store of a writer's index `vecs`: the committed one, cut back to its commit; or a
        new one, holding the index's vectors when they are exact (Flat)."""
        full = cls.of(folder, session, vecs.d)
        if full is not None:
            full.cut_uncommitted()
            return full
        for stale in (folder / "full-1.vec", folder / "full-1.ids"):  # a first commit that never came
            stale.unlink(missing_ok=True)
        exact = not vecs.is_ivf and vecs.factory.endswith("Flat")
        full = cls(folder, vecs.d, complete=exact or vecs.ntotal == 0)
        if exact and vecs.ntotal:
            ids, xb = vecs.all_vectors()
            full.append(xb, ids)
        return full

    @property
    def vec_path(self) -> Path:
        return self.folder / f"{self.name}.vec"

    @property
    def ids_path(self) -> Path:
        return self.folder / f"{self.name}.ids"

    @property
    def rows(self) -> int:
        return self.committed + self.pending

    def cut_uncommitted(self) -> None:
        """Cut the files back to the committed rows (a run killed after appending left more)."""
        for path, width in ((self.vec_path, self.d * self.dtype.itemsize), (self.ids_path, 8)):
            if path.exists() and path.stat().st_size != self.committed * width:
                with open(path, "r+b") as f:
                    f.truncate(self.committed * width)
        self.pending = 0

    def append(self, xb: np.ndarray, ids: Any) -> None:
        """Rows for these ids (committed by the next `stage` and the caller's commit)."""
        xb = np.ascontiguousarray(xb, dtype=self.dtype)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if xb.shape != (len(ids), self.d):
            raise ValueError(f"{xb.shape} vectors for {len(ids)} ids of dimension {self.d}")
        try:  # a partial row past the committed ones is cut by the next writer (cut_uncommitted)
            with open(self.vec_path, "ab") as f:
                f.write(xb.tobytes())
            with open(self.ids_path, "ab") as f:
                f.write(ids.tobytes())
        except OSError as e:
            raise cannot_write(self.vec_path, e) from None
        self.pending += len(ids)

    def stage(self, session: Session) -> None:
        """Make the appended rows durable and record their count (uncommitted: the caller commits)."""
        for path in (self.vec_path, self.ids_path):
            if path.exists():
                try:
                    with open(path, "rb+") as f:
                        os.fsync(f.fileno())
                except OSError as e:  # a delayed write that found the disk full
                    raise cannot_write(path, e) from None
        set_meta(session, META, {"name": self.name, "rows": self.rows, "d": self.d, "dtype": self.dtype.name,
                                 "complete": self.complete})

    def committed_now(self) -> None:
        """After the caller's commit."""
        self.committed, self.pending = self.rows, 0

    # Read with plain file reads, not a memory map: mapped pages of a 10 GB file count in the
    # process's resident memory; read ones stay in the page cache, which the kernel reclaims.
    def ids(self) -> np.ndarray:
        return np.fromfile(self.ids_path, np.int64, count=self.rows) if self.rows else np.zeros(0, np.int64)

    def read(self, start: int, rows: int, pick: np.ndarray | None = None) -> np.ndarray:
        """Rows start..start+rows-1 (of them, those `pick` selects) as float32."""
        width = self.d * self.dtype.itemsize
        got = np.fromfile(self.vec_path, self.dtype, count=rows * self.d, offset=start * width).reshape(rows, self.d)
        return (got if pick is None else got[pick]).astype(np.float32)

    def chunks(self, live: np.ndarray | None = None, rows: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float32 vectors) in chunks of about `rows`, in file order; with `live` (sorted
        ids the catalog holds), only those, each id's last row (an item written again after a
        crash has two rows)."""
        ids, rows = self.ids(), rows or chunk_rows(self.d)
        keep = np.isin(ids, live) & self.last_rows(ids) if live is not None else None
        for start in range(0, len(ids), rows):
            n = min(rows, len(ids) - start)
            mine = keep[start:start + n] if keep is not None else None
            if mine is None or mine.all():
                yield ids[start:start + n], self.read(start, n)
            elif mine.any():  # only the kept rows converted to float32
                yield ids[start:start + n][mine], self.read(start, n, mine)

    @staticmethod
    def last_rows(ids: np.ndarray) -> np.ndarray:
        """Whether each row is its id's last."""
        order = np.argsort(ids[::-1], kind="stable")
        _, first = np.unique(ids[::-1][order], return_index=True)
        keep = np.zeros(len(ids), bool)
        keep[len(ids) - 1 - order[first]] = True
        return keep

    def sample(self, n: int, live: np.ndarray | None = None, seed: int = 0,
               rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Up to `n` rows drawn at random, (ids, float32 vectors); with `live`, only its ids'.
        Read in one pass over the file, a chunk at a time."""
        ids, rows = self.ids(), rows or chunk_rows(self.d)
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(ids), min(len(ids), 2 * n if live is not None else n), replace=False))
        if live is not None:
            pick = pick[np.isin(ids[pick], live)]
            pick = np.sort(rng.permutation(pick)[:n])
        out = np.empty((len(pick), self.d), np.float32)
        done = 0
        for start in range(0, len(ids), rows):
            mine = pick[(pick >= start) & (pick < start + rows)]
            if len(mine):
                out[done:done + len(mine)] = self.read(start, min(rows, len(ids) - start), mine - start)
                done += len(mine)
        return ids[pick], out

    def view(self, live: np.ndarray, rows: int | None = None) -> LiveVectors:
        """These rows as a source for a rebuild: only the items the catalog holds (ids), read
        `rows` at a time."""
        return LiveVectors(self, np.sort(np.asarray(live, np.int64)), rows)


def check(folder: Path, session: Session, d: int | None, item_ids: set[int], problems: list[str]) -> None:
    """`xmr check`: the committed rows are on disk, and, once complete, hold every item's vector."""
    full = FullVectors.of(folder, session, d) if d else None
    if full is None:
        return
    width = full.d * full.dtype.itemsize
    for path, size in ((full.vec_path, full.committed * width), (full.ids_path, full.committed * 8)):
        if not path.exists() or path.stat().st_size < size:
            problems.append(f"the full-precision vectors are cut short ({path.name}: {full.committed} rows committed)")
            return
    if full.complete:
        if missing := item_ids - set(np.unique(full.ids()).tolist()):
            problems.append(f"{len(missing)} items have no full-precision vector (e.g. id {min(missing)})")


class ArraySource:
    """Vectors already in memory, as a source for autoindex.build_streaming."""

    def __init__(self, ids: np.ndarray, xb: np.ndarray, rows: int | None = None) -> None:
        self.ids, self.xb, self.d, self.rows = ids, xb, xb.shape[1], rows

    def chunks(self, rows: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        step = rows or self.rows or chunk_rows(self.d)
        for start in range(0, len(self.ids), step):
            yield self.ids[start:start + step], self.xb[start:start + step]

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        if n >= len(self.ids):
            return self.ids, self.xb
        pick = np.sort(np.random.default_rng(seed).choice(len(self.ids), n, replace=False))
        return self.ids[pick], self.xb[pick]


class LiveVectors:
    """A FullVectors restricted to live ids: what autoindex.build_streaming reads."""

    def __init__(self, full: FullVectors, live: np.ndarray, rows: int | None = None) -> None:
        self.full, self.live, self.d, self.rows = full, live, full.d, rows

    def chunks(self, rows: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.full.chunks(self.live, rows or self.rows)

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        return self.full.sample(n, self.live, seed, self.rows)
