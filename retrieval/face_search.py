"""Search by a face (`--face FILE`): the largest face in a photo (not necessarily in the
library) is described by the face model and looked up in the faces' index (a space of its own).
Alone, one face ranks the pictures and video shots where faces like it are seen, most alike
first, among those that pass the filters. With a text or other media, or with more faces, each
face stands for the person it belongs to: the search runs with those people as `--person`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer import face_index
from indexer.face_catalog import FaceRow
from indexer.faces import SAME_PERSON, FaceModel
from indexer.kinds.image import load_image
from indexer.readers import load_once
from retrieval.errors import DecodeError, NotFoundError, UsageError
from retrieval.filters import matching_ids
from retrieval.hits import Hit, group_hits, load_rows, make_hit

if TYPE_CHECKING:
    from retrieval.request import Resolved

SAME_COSINE = 1 - SAME_PERSON ** 2 / 2  # unit vectors: |a - b|^2 = 2 - 2 cos
LOOK_AT = 2000  # the nearest faces looked at (a person's faces, and then some)


def describe(path: str, name: str | None = None) -> np.ndarray:
    """The descriptor of the largest face in a photo; UsageError when it shows none."""
    try:
        picture = load_image(path)
    except DecodeError as e:
        raise UsageError(f"--face {name or path}: {e}") from None
    found = load_once(("faces",), FaceModel).find(picture)
    if not found:
        raise UsageError(f"--face {name or path}: no face found in it")
    return max(found, key=lambda f: f.box[2] * f.box[3]).descriptor


def _near(s: Session, folder: Any, descriptor: np.ndarray) -> list[tuple[int, float]]:
    """(face id, cosine) of the library's faces like this one, most alike first."""
    index = face_index.load(folder, s)
    if index is None or index.ntotal == 0:
        return []
    D, I = index.search(descriptor[None, :].astype(np.float32), min(LOOK_AT, index.ntotal))
    return [(int(i), float(d)) for d, i in zip(D[0], I[0]) if i != -1 and d >= SAME_COSINE]


def person_of(s: Session, folder: Any, path: str, name: str | None = None) -> int:
    """The person the face in a photo belongs to (most of its alike faces' person)."""
    near = _near(s, folder, describe(path, name))
    people = {f: p for f, p in s.execute(select(FaceRow.id, FaceRow.person_id).where(
        FaceRow.id.in_([f for f, _ in near]))) if p is not None} if near else {}
    votes: dict[int, int] = {}
    for f, _ in near:
        if f in people:
            votes[people[f]] = votes.get(people[f], 0) + 1
    if not votes:
        raise NotFoundError(f"the face in {name or path} is not like anyone's in this library")
    return max(votes, key=lambda p: votes[p])


def by_face(s: Session, folder: Any, r: Resolved, search: Callable[[Resolved], list[Hit]]) -> list[Hit]:
    """A request with faces (see the module's docstring)."""
    names = {}
    if r.query is not None:
        names = r.query.names
    if r.query is not None or len(r.faces) > 1:
        people = tuple(str(person_of(s, folder, p, names.get(p))) for p in r.faces)
        return search(replace(r, faces=(), filters=replace(r.filters, persons=(*r.filters.persons, *people))))
    if r.sort == "date":
        raise UsageError("--face alone ranks by likeness; give a text to sort by date")
    near = _near(s, folder, describe(r.faces[0], names.get(r.faces[0])))
    item_of = dict(s.execute(select(FaceRow.id, FaceRow.item_id).where(FaceRow.id.in_([f for f, _ in near]))).tuples().all()) if near else {}
    best: dict[int, float] = {}
    for f, cosine in near:  # most alike first: an item's first face is its best
        if f in item_of:
            best.setdefault(item_of[f], cosine)
    ranked = list(best.items())
    if not r.filters.empty or r.modality is not None:
        allowed = set(matching_ids(s, r.filters, r.modality).tolist())
        ranked = [(i, c) for i, c in ranked if i in allowed]
    rows = load_rows(s, [i for i, _ in ranked])
    hits = [make_hit(*rows[i], c, cosine=c) for i, c in ranked if i in rows]
    if r.group:
        hits = group_hits(hits, r.offset + r.k)
    return hits[r.offset:r.offset + r.k]
