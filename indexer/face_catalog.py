"""Faces and people in the catalog (schema 11): each face found in a picture or a video's shot,
with its box, its descriptor (128 float32, unit length) and an aligned thumbnail; people as
groups of faces, named by the user; and the (face, person) pairs the user undid, never proposed
again. The catalog holds the descriptors, so the faces' FAISS index (indexer.face_index) is
made from it and can always be made again; forgetting a person deletes them here.

A file remembers whether its faces were looked for (`files.faces_seen`): a library indexed
before faces were on, or by Ray workers (which run the main model only), is caught up by the
next run without re-encoding anything else (indexer.face_sync).
"""

from __future__ import annotations

import importlib.util
import io
import time
from typing import TYPE_CHECKING, Optional, Sequence

from sqlalchemy import Boolean, Connection, Float, ForeignKey, LargeBinary, Text, delete, inspect, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from indexer.catalog import ON_DROP_FILES, Base, BigInt, chunked, get_meta, migration, set_meta

if TYPE_CHECKING:
    import numpy as np

    from indexer.faces import Face

FACES_VERSION = 1  # how a file's faces were looked for (files.faces_seen); NULL: not yet
FACE_KINDS = ("image", "video")  # the kinds whose pictures are looked at
THUMB_QUALITY = 85


class Person(Base):
    __tablename__ = "people"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    name: Mapped[Optional[str]] = mapped_column(Text, nullable=True, index=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class FaceRow(Base):
    """One face: its id is its vector's id in the faces' index."""

    __tablename__ = "faces"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    file_id: Mapped[int] = mapped_column(BigInt, ForeignKey("files.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(BigInt, ForeignKey("items.id", ondelete="CASCADE"), index=True)
    left: Mapped[float] = mapped_column(Float)  # the box, as fractions of the picture
    top: Mapped[float] = mapped_column(Float)
    width: Mapped[float] = mapped_column(Float)
    height: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    descriptor: Mapped[bytes] = mapped_column(LargeBinary)
    thumbnail: Mapped[bytes] = mapped_column(LargeBinary)  # a JPEG, aligned, THUMB_PX square
    person_id: Mapped[Optional[int]] = mapped_column(BigInt, ForeignKey("people.id", ondelete="SET NULL"),
                                                     nullable=True, index=True)
    by_user: Mapped[bool] = mapped_column(Boolean, default=False)  # put there by the user: kept there

    def vector(self) -> np.ndarray:
        import numpy as np

        return np.frombuffer(self.descriptor, np.float32)

    @property
    def box(self) -> list[float]:
        return [round(v, 4) for v in (self.left, self.top, self.width, self.height)]


class FaceRefusal(Base):
    """A face the user took away from a person: never given back to them."""

    __tablename__ = "face_refusals"
    face_id: Mapped[int] = mapped_column(BigInt, ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True)
    person_id: Mapped[int] = mapped_column(BigInt, ForeignKey("people.id", ondelete="CASCADE"), primary_key=True)


@migration(10)
def _faces(conn: Connection) -> None:
    """Version 11: faces, people, refusals; files remember whether their faces were looked for."""
    for table in (Person, FaceRow, FaceRefusal):
        table.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]
    if "faces_seen" not in {c["name"] for c in inspect(conn).get_columns("files")}:
        conn.exec_driver_sql("ALTER TABLE files ADD COLUMN faces_seen INTEGER")


def installed() -> bool:
    """Are the face models installed (`pip install 'xmr[faces]'`)?"""
    return all(importlib.util.find_spec(m) is not None for m in ("dlib", "face_recognition_models"))


def faces_on(session: Session, asked: bool | None) -> bool:
    """This run looks for faces: as asked (remembered for the next runs), else as remembered,
    else when the face models are installed."""
    if asked is not None:
        set_meta(session, "faces", {"enabled": asked})
        return asked
    remembered = get_meta(session, "faces")
    return bool(remembered["enabled"]) if remembered else installed()


def _jpeg(face: Face) -> bytes:
    out = io.BytesIO()
    face.thumbnail.convert("RGB").save(out, "JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def add(session: Session, file_id: int, found: Sequence[tuple[int, Sequence[Face]]]) -> int:
    """Rows for the faces found in a file's pictures: (item id, faces) pairs. Returns how many."""
    import numpy as np

    rows = [FaceRow(file_id=file_id, item_id=item_id, left=f.box[0], top=f.box[1], width=f.box[2], height=f.box[3],
                    score=f.score, descriptor=np.asarray(f.descriptor, np.float32).tobytes(), thumbnail=_jpeg(f))
            for item_id, faces in found for f in faces]
    session.add_all(rows)
    return len(rows)


def delete_for_files(session: Session, file_ids: Sequence[int]) -> None:
    """The faces of files that are removed (their vectors leave the faces' index at its next sync)."""
    for part in chunked(file_ids):
        face_ids = list(session.scalars(select(FaceRow.id).where(FaceRow.file_id.in_(part))))
        for faces in chunked(face_ids):
            session.execute(delete(FaceRefusal).where(FaceRefusal.face_id.in_(faces)))
        session.execute(delete(FaceRow).where(FaceRow.file_id.in_(part)))


ON_DROP_FILES.append(delete_for_files)
