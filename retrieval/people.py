"""A library's people, for the CLI, the server and Python: listed, named, merged, a face taken
off, a person forgotten (indexer.people_store, under the library's write lock), and a face's
thumbnail and the faces of a picture."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text

from indexer import face_index, people_store
from indexer.face_catalog import FaceRow
from indexer.store import Store
from retrieval.errors import NotFoundError
from retrieval.hits import Hit, add_tags, by_date, load_rows, make_hit


class People:
    def __init__(self, store: Store) -> None:
        self.store = store

    def list(self, min_faces: int = 1) -> list[dict[str, Any]]:
        """Every person: id, name (None until named), faces, files, sample_face (a face id)."""
        with self.store.Session() as s:
            return people_store.listing(s, min_faces)

    def one(self, ref: str | int) -> dict[str, Any]:
        """One person as `list` gives them, with the pictures and shots they are seen in (item ids)."""
        with self.store.Session() as s:
            p = people_store.person(s, ref)
            entry = next(e for e in people_store.listing(s, 0, only=p.id) if e["id"] == p.id)
            return {**entry, "items": people_store.items_of(s, p.id)}

    def name(self, ref: str | int, name: str, wait: bool = False) -> dict[str, Any]:
        with self.store.write_lock(wait), self.store.Session() as s:
            p = people_store.name(s, ref, name)
            s.commit()
            return {"id": p.id, "name": p.name}

    def merge(self, keep: str | int, other: str | int, wait: bool = False) -> dict[str, Any]:
        """`other`'s faces become `keep`'s; returns the person kept."""
        with self.store.write_lock(wait), self.store.Session() as s:
            p = people_store.merge(s, keep, other)
            s.commit()
            return {"id": p.id, "name": p.name}

    def unassign(self, face_id: int, wait: bool = False) -> int:
        """Take a face off its person for good; returns the person it left."""
        with self.store.write_lock(wait), self.store.Session() as s:
            left = people_store.unassign(s, face_id)
            s.commit()
            return left

    def forget(self, ref: str | int, wait: bool = False) -> dict[str, Any]:
        """Delete a person's faces (descriptors, thumbnails, vectors) and the person."""
        with self.store.write_lock(wait), self.store.Session() as s:
            sqlite = s.get_bind().dialect.name == "sqlite"
            if sqlite:  # the deleted rows' bytes are overwritten, not left in free pages
                s.execute(text("PRAGMA secure_delete = ON"))
            p, n = people_store.forget(s, ref)
            out = {"id": p.id, "name": p.name, "faces": n}
            s.commit()
            face_index.sync(self.store.path, s)
            if sqlite:
                s.execute(text("PRAGMA secure_delete = OFF"))
            return out

    def thumbnail(self, face_id: int) -> bytes:
        """A face's aligned thumbnail (JPEG)."""
        with self.store.Session() as s:
            data = s.scalar(select(FaceRow.thumbnail).where(FaceRow.id == face_id))
        if data is None:
            raise NotFoundError(f"no face {face_id}")
        return data

    def in_item(self, item_id: int) -> list[dict[str, Any]]:
        """The faces of a picture or a video shot: id, box (fractions), person, name."""
        with self.store.Session() as s:
            return people_store.faces_of_items(s, [item_id]).get(item_id, [])

    def hits(self, ref: str | int, k: int = 60, offset: int = 0) -> list[Hit]:
        """The pictures and video shots a person is seen in, newest first (their files' dates)."""
        with self.store.Session() as s:
            p = people_store.person(s, ref)
            rows = load_rows(s, people_store.items_of(s, p.id))
            hits = by_date([make_hit(item, f, 1.0) for item, f in rows.values()])
            return add_tags(s, hits[offset:offset + k])
