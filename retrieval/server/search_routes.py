"""The search routes of the HTTP API: /api/search (GET and JSON POST) and /api/search/upload,
their parameters made from the request's declaration (retrieval.request, api_request)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Optional

from fastapi import FastAPI, File, Form, Query as Param, UploadFile

from retrieval.cutoff import MAX_RESULTS
from retrieval.request import SearchRequest
from retrieval.server.api_request import search_model, wire_of
from retrieval.server.state import LibraryState

SearchParams: Any = search_model()  # the request's declaration as the API's parameters


def answer_of(lib: Any, state: LibraryState, request: SearchRequest) -> dict[str, Any]:
    """One page of hits, as the API answers them; `more` says whether a next page may hold more."""
    r = request.resolve()
    for item_id in r.like:
        lib.item(item_id)  # NotFoundError for an unknown id
    t0 = time.perf_counter()
    remote = lib.store.remote  # sharded search (retrieval.sharded): which shards answered
    with state.compute:
        if remote is not None:
            remote.reset()
        hits = lib.run_search(r)
        missing = remote.missing if remote is not None else []
    answer = {
        "library": str(lib.path.resolve()),
        "hits": [h.to_dict() for h in hits],
        "k": r.k,
        "offset": r.offset,
        "more": len(hits) == r.k and r.offset + r.k < MAX_RESULTS,
        "filters": r.filters.to_dict(),
        "tokens": [t.to_dict() for t in r.tokens],  # the filters typed in the query (the page's chips)
        "took_ms": round((time.perf_counter() - t0) * 1000, 2),
    }
    if missing:  # sharded search: some shard did not answer (its actor is being restarted)
        answer["partial"], answer["missing_shards"] = True, missing
    if not hits and r.offset == 0:  # is the library empty, or without that kind? (only when needed)
        facts = state.describe(lib)
        answer["items"], answer["items_by_modality"] = facts["items"], facts["items_by_modality"]
    return answer


def _save(files: list[UploadFile], kind: str, tmp: str, names: dict[str, str]) -> tuple[str, ...]:
    """Uploads saved in `tmp` (named for messages in `names`): their paths."""
    paths = []
    for n, upload in enumerate(files):
        suffix = Path(upload.filename or "").suffix
        suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""
        path = os.path.join(tmp, f"{kind}-{n}{suffix}")
        with open(path, "wb") as out:
            shutil.copyfileobj(upload.file, out)
        names[path] = f"{kind} {upload.filename or n!r}"
        paths.append(path)
    return tuple(paths)



def add_search_routes(app: FastAPI, state: LibraryState) -> None:
    """The search routes, with the kinds registered now in their parameters."""
    global SearchParams  # resolved by name in the routes' annotations
    SearchParams = search_model()

    @app.get("/api/search", tags=["search"])
    def search_get(params: Annotated[SearchParams, Param()]) -> dict[str, Any]:
        """Search by text (and/or library items), e.g. /api/search?q=sunset&type=image&k=20, or
        /api/search?q=sunset+type:image+after:2020 (the query language); mode=words for exact
        words only, semantic for meaning only."""
        return answer_of(state.library(), state, SearchRequest.from_wire(wire_of(params)))

    @app.post("/api/search", tags=["search"])
    def search_json(params: SearchParams) -> dict[str, Any]:
        """Search with the same parameters as a JSON object."""
        return answer_of(state.library(), state, SearchRequest.from_wire(wire_of(params)))

    @app.post("/api/search/upload", tags=["search"])
    def search_upload(
        params: Annotated[SearchParams, Form()],
        image: Annotated[Optional[list[UploadFile]], File(description="Pictures to search by")] = None,
        audio: Annotated[Optional[list[UploadFile]], File(description="Sound files to search by")] = None,
        video: Annotated[Optional[list[UploadFile]], File(description="Videos to search by (the mean of their shots)")] = None,
        face: Annotated[Optional[list[UploadFile]], File(description="Photos of a face: that person's pictures and moments")] = None,
    ) -> dict[str, Any]:
        """Search by uploaded pictures, sounds and/or videos (multipart/form-data), with the search
        parameters as form fields. Uploads are decoded by the same guarded decoders as indexing
        and deleted afterwards."""
        lib = state.library()
        with tempfile.TemporaryDirectory(prefix="xmr-upload-") as tmp:
            names: dict[str, str] = {}
            paths = {kind: _save(files or [], kind, tmp, names)
                     for kind, files in (("image", image), ("audio", audio), ("video", video), ("face", face))}
            request = SearchRequest.from_wire(wire_of(params), images=paths["image"], audios=paths["audio"],
                                              videos=paths["video"], faces=paths["face"], names=names)
            return answer_of(lib, state, request)

