"""The faces' FAISS index: one unit vector per face (dlib's descriptor, a space of its own, never
mixed with the library's models), under the face's id. It is made from the descriptors the
catalog keeps (indexer.face_catalog), so it is brought in step after each run (`sync`) and can
always be made again (`xmr check --repair`). It follows the store's commit protocol: saved under
a new name (`faces-N.faiss`), made current by the commit that records the name (meta
"face_index"), the replaced file deleted after it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from indexer.catalog import File, Item, chunked, get_meta, set_meta
from indexer.face_catalog import FaceRow
from indexer.faces import DIM
from indexer.store import FACE_META
from indexer.vectors import VectorIndex, full_factory

META = FACE_META  # {"index_file": "faces-N.faiss", "vectors": n}
FACTORY = full_factory("Flat")  # exact: a library's faces number in the thousands to hundreds of thousands


def committed_file(folder: Path, session: Session) -> Path | None:
    name = (get_meta(session, META) or {}).get("index_file")
    return folder / name if name else None


def load(folder: Path, session: Session) -> VectorIndex | None:
    """The committed faces' index; None before the first face."""
    path = committed_file(folder, session)
    if path is None or not path.exists():
        return None
    return VectorIndex.load(path, FACTORY)


def face_ids(session: Session) -> np.ndarray:
    return np.fromiter(session.scalars(select(FaceRow.id)), np.int64)


def sync(folder: Path, session: Session) -> dict[str, Any]:
    """Bring the faces' index in step with the catalog's faces and commit; the caller holds the
    write lock. Returns {"added", "removed", "vectors"}."""
    vecs = load(folder, session) or VectorIndex.create(DIM, "Flat")
    have, want = vecs.ids(), face_ids(session)
    gone = np.setdiff1d(have, want)
    missing = np.setdiff1d(want, have)
    removed = vecs.remove(gone.tolist())
    for part in chunked(missing.tolist(), 2000):
        rows = list(session.execute(select(FaceRow.id, FaceRow.descriptor).where(FaceRow.id.in_(part))))
        vecs.add(np.stack([np.frombuffer(d, np.float32) for _, d in rows]), [i for i, _ in rows])
    old = committed_file(folder, session)
    if removed or len(missing):
        n = int(old.stem.split("-")[1]) + 1 if old is not None else 1
        name = f"faces-{n}.faiss"
        vecs.save(folder / name)
        set_meta(session, META, {"index_file": name, "vectors": vecs.ntotal})
        session.commit()
        if old is not None and old.name != name:
            old.unlink(missing_ok=True)
    return {"added": len(missing), "removed": removed, "vectors": vecs.ntotal}


def check(s: Session, folder: Path, problems: list[str], warnings: list[str]) -> bool:
    """`xmr check`: every face has its picture, and the faces' index holds the catalog's faces.
    The index is made from the catalog after each run, so one that is behind (a run killed
    before it) is a warning: the next run, or `--repair`, brings it in step. True when it needs
    that (`repair`)."""
    from indexer.face_catalog import FACE_KINDS, faces_on

    try:
        vecs = load(folder, s)
    except Exception as e:  # noqa: BLE001 - an unreadable file is this check's finding
        problems.append(f"the faces' index cannot be read: {e}")
        return True
    path = committed_file(folder, s)
    if path is not None and not path.exists():
        problems.append(f"the faces' index file is missing ({path.name})")
    have = set((vecs.ids() if vecs is not None else np.zeros(0, np.int64)).tolist())
    want = set(face_ids(s).tolist())
    if missing := want - have:
        warnings.append(f"{len(missing)} faces are not in the faces' index yet (e.g. face {min(missing)}); "
                        "`xmr index` or `xmr check --repair` adds them")
    if gone := have - want:
        warnings.append(f"{len(gone)} vectors in the faces' index belong to no face (e.g. id {min(gone)}); "
                        "`xmr index` or `xmr check --repair` removes them")
    orphans = s.scalar(select(func.count(FaceRow.id)).where(~FaceRow.item_id.in_(select(Item.id)))) or 0
    if orphans:
        problems.append(f"{orphans} faces belong to no picture")
    if faces_on(s, None):
        behind = s.scalar(select(func.count(File.id)).where(File.modality.in_(FACE_KINDS), File.faces_seen.is_(None)))
        if behind:
            warnings.append(f"{behind} files' faces were not looked for yet; `xmr index` looks")
    return bool(missing or gone or orphans or (path is not None and not path.exists()))


def repair(s: Session, folder: Path, repaired: list[str]) -> None:
    """Faces of pictures that are gone deleted; the index made again from the catalog."""
    gone = list(s.scalars(select(FaceRow.id).where(~FaceRow.item_id.in_(select(Item.id)))))
    for part in chunked(gone):
        s.execute(delete(FaceRow).where(FaceRow.id.in_(part)))
    s.commit()
    done = sync(folder, s)
    repaired.append(f"faces' index brought in step: {done['added']} added, {done['removed']} removed"
                    + (f", {len(gone)} faces of pictures no longer there deleted" if gone else ""))
