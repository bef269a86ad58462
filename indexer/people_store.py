"""People in the catalog: new faces joined to them after each run, and what the user does with
them (`xmr people`: name, merge, unassign, forget). Grouping itself is indexer.people's.

Every face ends up with a person: a new face joins the person most of its close neighbours
belong to, and faces that join no one are grouped among themselves (chinese whispers), each
group a new person, one face or many. The user's word wins: a face taken off a person is never
given back to them (FaceRefusal), and people are merged only when the user asks.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from indexer.catalog import File, Item, get_meta, set_meta
from indexer.face_catalog import FaceRefusal, FaceRow, Person
from indexer.people import assign, group
from retrieval.errors import NotFoundError, UsageError


def changed(s: Session) -> None:
    """Who is seen where changed: searches filtered by people compute their items again."""
    set_meta(s, "people_version", int(get_meta(s, "people_version", 0)) + 1)


def _vectors(blobs: list[bytes]) -> np.ndarray:
    return np.stack([np.frombuffer(b, np.float32) for b in blobs]) if blobs else np.zeros((0, 128), np.float32)


def group_new_faces(s: Session) -> tuple[int, int]:
    """Faces without a person join one, or make new ones. Returns (people made, faces joined)."""
    new = list(s.execute(select(FaceRow.id, FaceRow.descriptor).where(FaceRow.person_id.is_(None)).order_by(FaceRow.id)))
    if not new:
        return 0, 0
    changed(s)
    known = list(s.execute(select(FaceRow.descriptor, FaceRow.person_id).where(FaceRow.person_id.is_not(None))))
    at = {face_id: i for i, (face_id, _) in enumerate(new)}
    refused = [(at[f], p) for f, p in s.execute(select(FaceRefusal.face_id, FaceRefusal.person_id)) if f in at]
    x = _vectors([d for _, d in new])
    joined = assign(x, _vectors([d for d, _ in known]), [p for _, p in known], refused=refused)
    strangers = [i for i, p in enumerate(joined) if p is None]
    labels = group(x[strangers]) if strangers else []
    made: dict[int, Person] = {}
    for label in labels:
        if label not in made:
            made[label] = Person()
            s.add(made[label])
    s.flush()
    for i, label in zip(strangers, labels):
        joined[i] = made[label].id
    by_person: dict[int, list[int]] = {}
    for (face_id, _), person in zip(new, joined):
        by_person.setdefault(int(person), []).append(face_id)  # type: ignore[arg-type]
    for person, faces in by_person.items():
        s.execute(update(FaceRow).where(FaceRow.id.in_(faces)).values(person_id=person))
    return len(made), len(new) - len(strangers)


def person(s: Session, ref: str | int) -> Person:
    """A person by id, by name (case does not matter) or by one word of one person's name
    ("biden" for "Joe Biden"); NotFoundError when there is none, UsageError when several fit."""
    if isinstance(ref, int) or str(ref).strip().isdigit():
        found = s.get(Person, int(ref))
        if found is None:
            raise NotFoundError(f"no person {ref}; `xmr people` lists them")
        return found
    want = str(ref).strip().lower()
    named = list(s.scalars(select(Person).where(Person.name.is_not(None))))
    exact = [p for p in named if (p.name or "").lower() == want]
    fits = exact or [p for p in named if want in (p.name or "").lower().split()]
    if len(fits) == 1:
        return fits[0]
    if fits:
        raise UsageError(f"{ref!r} could be {', '.join(f'{p.name} ({p.id})' for p in fits)}; give the id or the whole name")
    raise NotFoundError(f"no person named {ref!r}; `xmr people` lists them")


def listing(s: Session, min_faces: int = 1, only: int | None = None) -> list[dict[str, Any]]:
    """Every person (or person `only`) with `min_faces` or more: id, name, faces, files (paths),
    sample face id; the named first, then by faces."""
    seen = FaceRow.person_id.is_not(None) if only is None else FaceRow.person_id == only
    counts = dict(s.execute(select(FaceRow.person_id, func.count(FaceRow.id)).where(seen)
                            .group_by(FaceRow.person_id)).all())
    best: dict[int, tuple[float, int]] = {}
    for person_id, face_id, score in s.execute(select(FaceRow.person_id, FaceRow.id, FaceRow.score).where(seen)):
        if person_id not in best or score > best[person_id][0]:
            best[person_id] = (score, face_id)
    files: dict[int, list[str]] = {}
    for person_id, path in s.execute(select(FaceRow.person_id, File.path).join(File, File.id == FaceRow.file_id)
                                     .where(seen).distinct().order_by(File.path)):
        files.setdefault(person_id, []).append(path)
    people = select(Person) if only is None else select(Person).where(Person.id == only)
    out = [{"id": p.id, "name": p.name, "faces": counts.get(p.id, 0), "files": files.get(p.id, []),
            "sample_face": best[p.id][1] if p.id in best else None}
           for p in s.scalars(people) if counts.get(p.id, 0) >= min_faces]
    return sorted(out, key=lambda p: (p["name"] is None, -p["faces"], p["id"]))


def name(s: Session, ref: str | int, new_name: str) -> Person:
    """Give a person a name (unique, whatever its case)."""
    new_name = new_name.strip()
    if not new_name or new_name.isdigit():
        raise UsageError("a person's name needs a letter (a number is taken for an id)")
    p = person(s, ref)
    other = s.scalars(select(Person).where(func.lower(Person.name) == new_name.lower(), Person.id != p.id)).first()
    if other is not None:
        raise UsageError(f"{new_name!r} is already person {other.id}'s name; "
                         f"if they are one person: xmr people merge {other.id} {p.id}")
    p.name = new_name
    changed(s)
    return p


def merge(s: Session, keep_ref: str | int, other_ref: str | int) -> Person:
    """One person of two: the second's faces go to the first, which keeps its name (or takes
    the second's)."""
    keep, other = person(s, keep_ref), person(s, other_ref)
    if keep.id == other.id:
        raise UsageError("that is one person already")
    s.execute(update(FaceRow).where(FaceRow.person_id == other.id).values(person_id=keep.id))
    refused = set(s.scalars(select(FaceRefusal.face_id).where(FaceRefusal.person_id == keep.id)))
    for face_id in s.scalars(select(FaceRefusal.face_id).where(FaceRefusal.person_id == other.id)):
        if face_id not in refused:
            s.add(FaceRefusal(face_id=face_id, person_id=keep.id))
    s.execute(delete(FaceRefusal).where(FaceRefusal.person_id == other.id))
    keep.name = keep.name or other.name
    s.delete(other)
    changed(s)
    return keep


def unassign(s: Session, face_id: int) -> int:
    """Take a face off its person, for good (it may join another person, or a new one, at the
    next run). Returns the person it left."""
    face = s.get(FaceRow, face_id)
    if face is None:
        raise NotFoundError(f"no face {face_id}")
    if face.person_id is None:
        raise UsageError(f"face {face_id} belongs to no one")
    left = face.person_id
    if s.get(FaceRefusal, (face_id, left)) is None:
        s.add(FaceRefusal(face_id=face_id, person_id=left))
    face.person_id = None
    changed(s)
    s.flush()
    group_new_faces(s)
    return left


def forget(s: Session, ref: str | int) -> tuple[Person, int]:
    """Delete a person with their faces' descriptors and thumbnails (the files stay; their faces
    are not looked for again). The faces' index drops the vectors at its next sync. Returns the
    person and how many faces went."""
    p = person(s, ref)
    faces = list(s.scalars(select(FaceRow.id).where(FaceRow.person_id == p.id)))
    s.execute(delete(FaceRefusal).where(FaceRefusal.person_id == p.id))
    for start in range(0, len(faces), 500):
        part = faces[start:start + 500]
        s.execute(delete(FaceRefusal).where(FaceRefusal.face_id.in_(part)))
        s.execute(delete(FaceRow).where(FaceRow.id.in_(part)))
    s.delete(p)
    changed(s)
    return p, len(faces)


def seen_with(s: Session, refs: Sequence[str]) -> list[Any]:
    """SQL conditions on items for `--person`: files in which every one of these people is seen,
    and of them the pictures and video shots where one of them is."""
    ids = [person(s, ref).id for ref in refs]
    return [Item.id.in_(select(FaceRow.item_id).where(FaceRow.person_id.in_(ids))),
            *(Item.file_id.in_(select(FaceRow.file_id).where(FaceRow.person_id == i)) for i in ids)]


def faces_of_items(s: Session, item_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """The faces seen in pictures or shots, by item: id, box (fractions), person id and name,
    left to right."""
    out: dict[int, list[dict[str, Any]]] = {}
    for start in range(0, len(item_ids), 500):
        rows = s.execute(select(FaceRow.item_id, FaceRow.id, FaceRow.left, FaceRow.top, FaceRow.width, FaceRow.height,
                                Person.id, Person.name).outerjoin(Person, Person.id == FaceRow.person_id)
                         .where(FaceRow.item_id.in_(list(item_ids[start:start + 500]))).order_by(FaceRow.left))
        for item, f, left, top, w, h, pid, pname in rows:
            out.setdefault(item, []).append({"id": f, "box": [round(v, 4) for v in (left, top, w, h)], "person": pid,
                                             "name": pname})
    return out


def items_of(s: Session, person_id: int) -> list[int]:
    """The pictures and shots a person is seen in, in their files' order."""
    return list(s.scalars(select(FaceRow.item_id).join(Item, Item.id == FaceRow.item_id)
                          .where(FaceRow.person_id == person_id).distinct().order_by(FaceRow.item_id)))
