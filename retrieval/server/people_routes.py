"""The people routes of the HTTP API: the people in the library (`xmr people`), a face's
thumbnail, the pictures and moments a person is seen in, and what the user says of them
(name, merge, unassign, forget: the library's write lock, like `xmr people`)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query as Param
from fastapi.responses import Response

from retrieval.cutoff import MAX_RESULTS
from retrieval.errors import UsageError
from retrieval.server.state import LibraryState


def _person(p: dict[str, Any]) -> dict[str, Any]:
    face = p.get("sample_face")
    return {**p, "thumbnail_url": f"/api/faces/{face}/thumbnail" if face is not None else None}


def add_people_routes(app: FastAPI, state: LibraryState) -> None:
    @app.get("/api/people", tags=["people"])
    def people(min_faces: Annotated[int, Param(ge=1)] = 1) -> dict[str, Any]:
        """Every person: id, name (null until named), faces, files, a sample face's thumbnail."""
        return {"people": [_person(p) for p in state.library().people.list(min_faces)]}

    @app.get("/api/people/{person}", tags=["people"])
    def person(person: str) -> dict[str, Any]:
        """One person (an id or a name), with the items they are seen in."""
        return _person(state.library().people.one(person))

    @app.get("/api/people/{person}/hits", tags=["people"])
    def person_hits(person: str, k: Annotated[int, Param(ge=1, le=MAX_RESULTS)] = 60,
                    offset: Annotated[int, Param(ge=0, lt=MAX_RESULTS)] = 0) -> dict[str, Any]:
        """The pictures and video moments a person is seen in, newest first."""
        t0 = time.perf_counter()
        hits = state.library().people.hits(person, k=k + 1, offset=offset)
        return {"hits": [h.to_dict() for h in hits[:k]], "k": k, "offset": offset, "more": len(hits) > k,
                "took_ms": round((time.perf_counter() - t0) * 1000, 2)}

    @app.patch("/api/people/{person}", tags=["people"])
    def rename(person: str, name: Annotated[str, Body(embed=True, min_length=1, max_length=200)]) -> dict[str, Any]:
        """Name a person (`xmr people name`)."""
        return state.library().people.name(person, name)

    @app.post("/api/people/{person}/merge", tags=["people"])
    def merge(person: str, other: Annotated[str, Body(embed=True)]) -> dict[str, Any]:
        """`other` is this person too: their faces become this person's (`xmr people merge`)."""
        return state.library().people.merge(person, other)

    @app.delete("/api/people/{person}", tags=["people"])
    def forget(person: str) -> dict[str, Any]:
        """Delete a person's faces (descriptors, thumbnails) for good (`xmr people forget`)."""
        return state.library().people.forget(person)

    @app.post("/api/faces/{face_id}/unassign", tags=["people"])
    def unassign(face_id: int) -> dict[str, Any]:
        """This face is not its person's, for good (`xmr people unassign`)."""
        return {"face": face_id, "left": state.library().people.unassign(face_id)}

    @app.get("/api/faces/{face_id}/thumbnail", tags=["people"])
    def face_thumbnail(face_id: int) -> Response:
        """A face's aligned thumbnail (JPEG, 96 px)."""
        if face_id < 0:
            raise UsageError("a face id is not negative")
        return Response(state.library().people.thumbnail(face_id), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=300"})
