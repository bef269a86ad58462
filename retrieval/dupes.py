"""Duplicates: files with the same content, and files that look the same (re-encoded, resized,
lightly edited), grouped, each group with a suggested keeper.

Exact: files of equal size and partial hash (recorded at index time) whose full SHA-256 agree.
Near: FAISS range search of each file's vector against the library's index (its inverted lists
on a large library, so each query scans a few lists, not every vector), keeping pairs at or above
`threshold` cosine, pictures confirmed by their perceptual hashes; pairs are joined into groups
(union-find). A picture's vector is its item's;
a file of several items (a document, a sound, a video) is compared by the mean of its items.
The keeper: the largest (pixels, then bytes), then the oldest (date taken, then file time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from indexer.catalog import File, Item
from indexer.vectors import VectorIndex
from retrieval.errors import UsageError

DEFAULT_THRESHOLD = 0.95
QUERY_BATCH = 4096
# Two pictures whose vectors are near are confirmed by their perceptual hashes (ImageHash's
# pHash at 16 x 16 = 256 bits): a model may place two different photos of one scene (or, a small
# model, of one kind of thing) closer than a re-encoded copy; the pixels tell them apart. At most
# 16 bits apart (1/16; imagededup's default for the 64-bit pHash is 10, about 1/6: stricter here,
# as a wrong "duplicate" costs a photo). Measured on the photo worlds of scripts/photo_world.py:
# re-encoded and resized copies 0-6 bits; two different drawings of one shape that the model
# holds within 0.95 of each other, 20 and more.
PHASH_BITS = 16
PHASH_MAX_BITS = 16


@dataclass
class DupeGroup:
    keeper: dict[str, Any]
    others: list[dict[str, Any]] = field(default_factory=list)
    exact: bool = False  # every file has the keeper's content

    def to_dict(self) -> dict[str, Any]:
        return {"exact": self.exact, "keeper": self.keeper, "others": self.others,
                "reclaimable_bytes": sum(o["size"] for o in self.others)}


class _Union:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        root = a
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while a != root:  # path compression
            self.parent[a], a = root, self.parent.get(a, a)
        return root

    def join(self, a: int, b: int) -> None:
        self.parent.setdefault(a, a)
        self.parent.setdefault(b, b)
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _sha256(path: str) -> str | None:
    from retrieval.encoders.clip import file_sha256

    try:
        return file_sha256(Path(path))
    except OSError:  # gone or unreadable since it was indexed: not confirmed
        return None


class _Looks:
    """Perceptual hashes of pictures, computed for the files that vectors paired (once each)."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.hashes: dict[int, Any] = {}

    def _hash(self, file_id: int) -> Any:
        if file_id not in self.hashes:
            import imagehash

            from indexer.kinds.image import load_image
            from retrieval.errors import DecodeError

            path = self.s.scalar(select(File.path).where(File.id == file_id))
            try:
                self.hashes[file_id] = imagehash.phash(load_image(path, 64), hash_size=PHASH_BITS) if path else None
            except DecodeError:  # gone or broken since it was indexed: not confirmed
                self.hashes[file_id] = None
        return self.hashes[file_id]

    def alike(self, a: int, b: int) -> bool:
        ha, hb = self._hash(a), self._hash(b)
        return ha is not None and hb is not None and (ha - hb) <= PHASH_MAX_BITS


def exact_pairs(s: Session, modality: str | None) -> tuple[list[tuple[int, int]], dict[int, str]]:
    """Pairs of files with the same content (full hashes read only for files whose size and
    partial hash agree), and the full hash of each file read."""
    stmt = select(File.size, File.phash).group_by(File.size, File.phash).having(func.count(File.id) > 1)
    if modality:
        stmt = stmt.where(File.modality == modality)
    pairs: list[tuple[int, int]] = []
    digests: dict[int, str] = {}
    for size, phash in s.execute(stmt).all():
        files = s.execute(select(File.id, File.path).where(File.size == size, File.phash == phash)).all()
        by_digest: dict[str, list[int]] = {}
        for fid, path in files:
            d = _sha256(path)
            if d is not None:
                digests[fid] = d
                by_digest.setdefault(d, []).append(fid)
        for ids in by_digest.values():
            pairs += [(ids[0], other) for other in ids[1:]]
    return pairs, digests


def near_pairs(vecs: VectorIndex, ids: np.ndarray, xb: np.ndarray | None, threshold: float,
               progress: Callable[[int], None] | None = None) -> list[tuple[int, int, float]]:
    """(id, id, cosine) for pairs at or above `threshold`: with `xb` None, `ids` are the index's
    own vectors searched in the index; else `xb` (rows named by `ids`) against each other."""
    import faiss

    out: list[tuple[int, int, float]] = []
    if xb is not None:  # file vectors of their own (means): a small exact index over them
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(xb.shape[1]))
        index.add_with_ids(np.ascontiguousarray(xb, np.float32), ids)
        source = lambda part: xb[part]  # noqa: E731
        search = lambda q: index.range_search(q, threshold)  # noqa: E731
    else:
        # a kind among others: only its own vectors are candidates (`ids` are all the index holds)
        sel = vecs.faiss.IDSelectorBatch(ids) if len(ids) < vecs.ntotal else None
        source = lambda part: vecs.reconstruct_many(ids[part])  # noqa: E731
        if vecs.is_ivf:
            params = vecs.faiss.SearchParametersIVF(nprobe=int(vecs.nprobe or 1))
            if sel is not None:
                params.sel = sel
        else:
            params = vecs.faiss.SearchParameters(sel=sel) if sel is not None else None
        search = lambda q: vecs.index.range_search(q, threshold, params=params)  # noqa: E731
    for start in range(0, len(ids), QUERY_BATCH):
        part = np.arange(start, min(start + QUERY_BATCH, len(ids)))
        q = np.ascontiguousarray(source(part), np.float32)
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        lims, D, I = search(q)
        for row, qid in enumerate(ids[part]):
            for d, other in zip(D[lims[row]:lims[row + 1]], I[lims[row]:lims[row + 1]]):
                if other > qid:  # each pair once, never itself
                    out.append((int(qid), int(other), float(d)))
        if progress:
            progress(len(part))
    return out


def _file_vectors(s: Session, vecs: VectorIndex, modality: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """A kind's files and what compares them: (file ids, their item ids, True) when each file
    has one item (searched in the index itself), else (file ids, mean vectors, False)."""
    rows = s.execute(select(Item.file_id, Item.id).where(Item.modality == modality).order_by(Item.file_id, Item.id)).all()
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, vecs.d), np.float32), True
    fids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    iids = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    if len(np.unique(fids)) == len(fids):
        return fids, iids, True
    held = np.isin(iids, vecs.ids())
    fids, iids = fids[held], iids[held]
    uniq, start = np.unique(fids, return_index=True)
    xb = vecs.reconstruct_many(iids)
    means = np.add.reduceat(xb, start, axis=0) if len(xb) else np.zeros((0, vecs.d), np.float32)
    return uniq, means, False


def find_dupes(s: Session, vecs: VectorIndex | None, *, threshold: float = DEFAULT_THRESHOLD,
               modality: str | None = None, progress: Callable[[int], None] | None = None) -> list[DupeGroup]:
    """Groups of duplicate files, largest reclaimable space first."""
    if not 0.0 < threshold <= 1.0:
        raise UsageError(f"--threshold is a cosine similarity between 0 and 1, got {threshold}")
    union = _Union()
    exact, digests = exact_pairs(s, modality)
    for a, b in exact:
        union.join(a, b)
    best: dict[int, float] = {}  # a file's highest similarity to another in its group
    looks = _Looks(s)
    if vecs is not None and vecs.ntotal:
        kinds = [modality] if modality else list(s.scalars(select(Item.modality).distinct()))
        for kind in kinds:
            fids, vectors, own = _file_vectors(s, vecs, kind)
            if not len(fids):
                continue
            if own:  # one item per file: search the index itself, item ids mapped back to files
                item_to_file = dict(zip(vectors.tolist(), fids.tolist()))
                present = vecs.present(np.sort(vectors))
                pairs = [(item_to_file[a], item_to_file[b], d) for a, b, d in near_pairs(vecs, present, None, threshold, progress)
                         if a in item_to_file and b in item_to_file]
            else:
                pairs = near_pairs(vecs, fids, vectors, threshold, progress)
            for a, b, d in pairs:
                if kind == "image" and not looks.alike(a, b):
                    continue
                union.join(a, b)
                best[a], best[b] = max(best.get(a, 0.0), d), max(best.get(b, 0.0), d)
    members: dict[int, list[int]] = {}
    for fid in list(union.parent):
        members.setdefault(union.find(fid), []).append(fid)
    groups = []
    for ids in members.values():
        rows = {f.id: f for f in s.scalars(select(File).where(File.id.in_(ids)))}
        first_item = dict(s.execute(select(Item.file_id, func.min(Item.id)).where(Item.file_id.in_(ids))
                                    .group_by(Item.file_id)).all())
        files = [rows[i] for i in ids if i in rows]
        if len(files) < 2:
            continue
        files.sort(key=lambda f: (-((f.width or 0) * (f.height or 0)), -f.size,
                                  f.taken_at if f.taken_at is not None else f.mtime_ns / 1e9, f.mtime_ns, f.path))
        keeper = files[0]
        same = {f.id for f in files if digests.get(f.id) is not None and digests.get(f.id) == digests.get(keeper.id)}

        def describe(f: File) -> dict[str, Any]:
            return {"file_id": f.id, "item_id": first_item.get(f.id), "path": f.path, "modality": f.modality, "size": f.size, "width": f.width,
                    "height": f.height, "date": f.taken_at if f.taken_at is not None else f.mtime_ns / 1e9,
                    "same_content": f.id in same, "similarity": round(best.get(f.id, 1.0 if f.id in same else 0.0), 4)}

        groups.append(DupeGroup(describe(keeper), [describe(f) for f in files[1:]], exact=len(same) == len(files)))
    groups.sort(key=lambda g: (-sum(o["size"] for o in g.others), g.keeper["path"]))
    return groups
