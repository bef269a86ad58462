"""The HTTP API and the web page (FastAPI), over one warm LibraryState.

JSON errors are {"detail": message} with the status the error deserves: 400 a bad query,
404 an unknown item, 413 an upload over the limit, 422 a malformed request or an upload that
cannot be decoded, 503 a library or model that cannot be used.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from fastapi import FastAPI, File, Form, Query as Param, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, field_validator

from indexer.kinds import get_kind, kind_names
from retrieval.errors import (
    DecodeError,
    EncoderMismatchError,
    LibraryError,
    ModelLoadError,
    NotFoundError,
    UsageError,
    XmrError,
)
from retrieval.cutoff import MAX_RESULTS
from retrieval.filters import Filters, make_filters
from retrieval.query import Query
from retrieval.server.clip_compat import add_clip_retrieval_routes
from retrieval.server.media import THUMBNAIL_SIZES, indexed_file, media_type, thumbnail
from retrieval.server.security import DEFAULT_MAX_UPLOAD, Guard
from retrieval.server.state import LibraryState, describe

STATIC = Path(__file__).parent / "static"


def _modality_enum() -> Any:
    """"any" or a registered kind (indexer.kinds): the API's enum follows the kinds xmr knows."""
    return Literal.__getitem__(("any", *kind_names()))


Modality = _modality_enum()


SearchMode = Literal["hybrid", "semantic", "words"]  # retrieval.hybrid.MODES


class SearchRequest(BaseModel):
    """A query as JSON: any mix of texts, library items ("like") and texts to steer away from."""

    q: list[str] = Field(default_factory=list, description="Texts to search for (their vectors are averaged)")
    like: list[int] = Field(default_factory=list, description="Item ids whose vectors join the query (more like these)")
    not_: list[str] = Field(default_factory=list, alias="not", description="Texts to steer away from")
    weight: Optional[float] = Field(None, ge=0, le=1, description="Share of the items in a query that also has text")
    not_weight: float = Field(0.5, ge=0, le=1)
    type: str = Field("any", description="'any', or a kind of item: " + ", ".join(kind_names()))
    k: int = Field(10, ge=1, le=MAX_RESULTS)
    offset: int = Field(0, ge=0, lt=MAX_RESULTS, description="Skip this many hits: the next page (the query is not encoded again)")
    group: bool = Field(False, description="One hit per file, with its best segments (a video's moments)")
    mode: SearchMode = Field("hybrid", description="hybrid: words and meaning fused (RRF); semantic: vectors only; "
                             "words: the full-text index only")
    after: Optional[str] = Field(None, description="Taken (else modified) on or after this date: YYYY[-MM[-DD[THH:MM]]]")
    before: Optional[str] = Field(None, description="Taken (else modified) before this date")
    in_: Optional[str] = Field(None, alias="in", description="Path glob: a folder, a file pattern ('*.png', 'Trips/2023')")
    camera: Optional[str] = Field(None, description="Part of the camera's make or model")
    near: Optional[str] = Field(None, description="LAT,LON,KM: taken within KM kilometres of a place")
    min_size: Optional[str] = Field(None, description="Smallest file size (e.g. 200KB)")
    max_size: Optional[str] = Field(None, description="Largest file size (e.g. 5MB)")
    tag: list[str] = Field(default_factory=list, description="Only items with every one of these tags")
    sort: Literal["relevance", "date"] = Field("relevance", description="date: the hits that pass the cutoff, newest first")
    cutoff: Optional[str] = Field(None, description="'auto' (the hits that stand out for this query) or a minimum score")

    model_config = {"populate_by_name": True}

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        # Checked against the kinds registered when the request comes (indexer.kinds).
        if value != "any" and value not in kind_names():
            raise ValueError(f"Input should be 'any' or one of {', '.join(repr(k) for k in kind_names())}")
        return value

    def filters(self) -> Filters:
        return make_filters(after=self.after, before=self.before, path=self.in_, camera=self.camera, near=self.near,
                            min_size=self.min_size, max_size=self.max_size, tags=self.tag)

    def options(self) -> dict[str, Any]:
        """What lib.search takes besides the query."""
        return {"modality": self.type, "k": self.k, "offset": self.offset, "group": self.group, "mode": self.mode,
                "filters": self.filters(), "sort": self.sort, "cutoff": self.cutoff}


_STATUS = [(UsageError, 400), (NotFoundError, 404), (DecodeError, 422), (EncoderMismatchError, 503),
           (ModelLoadError, 503), (LibraryError, 503)]


def create_app(state: LibraryState, *, token: str | None = None, max_upload: int = DEFAULT_MAX_UPLOAD,
               allowed_hosts: tuple[str, ...] = (), cors: tuple[str, ...] = (), allow_image_urls: bool = False) -> Any:
    """The ASGI app: FastAPI behind the Guard (host check or token, upload limit, CORS, headers),
    with clip-retrieval's routes beside xmr's own (clip_compat).
    The OpenAPI schema is at /openapi.json; the interactive /docs page is off because it loads
    its scripts from a CDN, and nothing here leaves the machine."""
    global Modality  # the kinds registered now (the routes below resolve it by name)
    Modality = _modality_enum()
    app = FastAPI(title="xmr", summary="Search your photos, videos, sounds and documents by meaning",
                  docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with one message, as every other error answers ({"detail": message})."""
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(XmrError)
    def xmr_error(request: Request, exc: XmrError) -> JSONResponse:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    def search(lib: Any, q: Query, body: SearchRequest) -> dict[str, Any]:
        """One page of hits, as the API answers them; `more` says whether a next page may hold more."""
        q.validate()  # before waiting for the model
        options = body.options()
        t0 = time.perf_counter()
        remote = lib.store.remote  # sharded search (retrieval.sharded): which shards answered
        with state.compute:
            if remote is not None:
                remote.reset()
            hits = lib.search(q, **options)
            missing = remote.missing if remote is not None else []
        answer = {
            "library": str(lib.path.resolve()),
            "hits": [h.to_dict() for h in hits],
            "k": body.k,
            "offset": body.offset,
            "more": len(hits) == body.k and body.offset + body.k < MAX_RESULTS,
            "filters": options["filters"].to_dict(),
            "took_ms": round((time.perf_counter() - t0) * 1000, 2),
        }
        if missing:  # sharded search: some shard did not answer (its actor is being restarted)
            answer["partial"], answer["missing_shards"] = True, missing
        if not hits and body.offset == 0:  # is the library empty, or without that kind? (only when needed)
            facts = describe(lib)
            answer["items"], answer["items_by_modality"] = facts["items"], facts["items_by_modality"]
        return answer

    def like_vectors(lib: Any, ids: list[int]) -> list[Any]:
        out = []
        for item_id in ids:
            lib.item(item_id)  # NotFoundError for an unknown id
            with state.compute:
                out.append(lib.item_vector(item_id))
        return out

    @app.get("/api/health", tags=["library"])
    def health() -> dict[str, Any]:
        """Is the server up, and for which library."""
        lib = state.library()
        return {"status": "ok", "pid": os.getpid(), "reloads": state.reloads, **describe(lib)}

    @app.get("/api/stats", tags=["library"])
    def stats() -> dict[str, Any]:
        """What `xmr stats --json` prints."""
        lib = state.library()
        return {**lib.stats(), "library": str(lib.path.resolve())}

    @app.get("/api/search", tags=["search"])
    def search_get(
        q: Annotated[Optional[list[str]], Param(description="Text to search for (repeatable)")] = None,
        like: Annotated[Optional[list[int]], Param(description="Item id to search like (repeatable)")] = None,
        not_: Annotated[Optional[list[str]], Param(alias="not", description="Text to steer away from (repeatable)")] = None,
        weight: Annotated[Optional[float], Param(ge=0, le=1)] = None,
        not_weight: Annotated[float, Param(ge=0, le=1)] = 0.5,
        type: Modality = "any",
        k: Annotated[int, Param(ge=1, le=MAX_RESULTS)] = 10,
        offset: Annotated[int, Param(ge=0, lt=MAX_RESULTS)] = 0,
        group: bool = False,
        mode: SearchMode = "hybrid",
        after: Optional[str] = None,
        before: Optional[str] = None,
        in_: Annotated[Optional[str], Param(alias="in")] = None,
        camera: Optional[str] = None,
        near: Optional[str] = None,
        min_size: Optional[str] = None,
        max_size: Optional[str] = None,
        tag: Annotated[Optional[list[str]], Param()] = None,
        sort: Literal["relevance", "date"] = "relevance",
        cutoff: Optional[str] = None,
    ) -> dict[str, Any]:
        """Search by text (and/or library items), e.g. /api/search?q=sunset&type=image&k=20;
        mode=words for exact words only, semantic for meaning only; filters as in SearchRequest."""
        return search_json(SearchRequest(q=q or [], like=like or [], not_=not_ or [], weight=weight, not_weight=not_weight,
                                         type=type, k=k, offset=offset, group=group, mode=mode, after=after, before=before,
                                         in_=in_, camera=camera, near=near, min_size=min_size, max_size=max_size,
                                         tag=tag or [], sort=sort, cutoff=cutoff))

    @app.post("/api/search", tags=["search"])
    def search_json(body: SearchRequest) -> dict[str, Any]:
        """Search with a JSON query."""
        lib = state.library()
        q = Query(texts=body.q, negatives=body.not_, media_weight=body.weight, negative_weight=body.not_weight,
                  vectors=like_vectors(lib, body.like))
        return search(lib, q, body)

    @app.post("/api/search/upload", tags=["search"])
    def search_upload(
        image: Annotated[Optional[list[UploadFile]], File(description="Pictures to search by")] = None,
        audio: Annotated[Optional[list[UploadFile]], File(description="Sound files to search by")] = None,
        video: Annotated[Optional[list[UploadFile]], File(description="Videos to search by (the mean of their shots)")] = None,
        q: Annotated[Optional[list[str]], Form(description="Text to combine with the files")] = None,
        not_: Annotated[Optional[list[str]], Form(alias="not")] = None,
        weight: Annotated[Optional[float], Form(ge=0, le=1, description="Share of the files in a query that also has text")] = None,
        not_weight: Annotated[float, Form(ge=0, le=1)] = 0.5,
        type: Annotated[Modality, Form()] = "any",
        k: Annotated[int, Form(ge=1, le=MAX_RESULTS)] = 10,
        offset: Annotated[int, Form(ge=0, lt=MAX_RESULTS)] = 0,
        group: Annotated[bool, Form()] = False,
        mode: Annotated[SearchMode, Form()] = "hybrid",
        after: Annotated[Optional[str], Form()] = None,
        before: Annotated[Optional[str], Form()] = None,
        in_: Annotated[Optional[str], Form(alias="in")] = None,
        camera: Annotated[Optional[str], Form()] = None,
        near: Annotated[Optional[str], Form()] = None,
        min_size: Annotated[Optional[str], Form()] = None,
        max_size: Annotated[Optional[str], Form()] = None,
        tag: Annotated[Optional[list[str]], Form()] = None,
        sort: Annotated[Literal["relevance", "date"], Form()] = "relevance",
        cutoff: Annotated[Optional[str], Form()] = None,
    ) -> dict[str, Any]:
        """Search by uploaded pictures, sounds and/or videos (multipart/form-data), optionally with text.
        Uploads are decoded by the same guarded decoders as indexing and deleted afterwards."""
        lib = state.library()
        with tempfile.TemporaryDirectory(prefix="xmr-upload-") as tmp:
            names: dict[str, str] = {}

            def save(files: list[UploadFile], kind: str) -> list[str]:
                paths = []
                for n, upload in enumerate(files):
                    suffix = Path(upload.filename or "").suffix
                    suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""
                    path = os.path.join(tmp, f"{kind}-{n}{suffix}")
                    with open(path, "wb") as out:
                        shutil.copyfileobj(upload.file, out)
                    names[path] = f"{kind} {upload.filename or n!r}"
                    paths.append(path)
                return paths

            query = Query(texts=q or [], negatives=not_ or [], images=save(image or [], "image"), audios=save(audio or [], "audio"),
                          videos=save(video or [], "video"), media_weight=weight, negative_weight=not_weight, names=names)
            body = SearchRequest(type=type, k=k, offset=offset, group=group, mode=mode, after=after, before=before,
                                 in_=in_, camera=camera, near=near, min_size=min_size, max_size=max_size,
                                 tag=tag or [], sort=sort, cutoff=cutoff)
            return search(lib, query, body)

    @app.get("/api/tags", tags=["organise"])
    def tags(label: Optional[str] = None, k: Annotated[int, Param(ge=1, le=MAX_RESULTS)] = 100) -> dict[str, Any]:
        """The library's tags with their counts (`xmr tags`); with `label`, its items, most sure first."""
        lib = state.library()
        if label is None:
            return {"tags": lib.tags()}
        return {"label": label, "items": lib.tags(label, k)}

    @app.get("/api/dupes", tags=["organise"])
    def dupes(threshold: Annotated[float, Param(gt=0, le=1)] = 0.95, type: Modality = "any") -> dict[str, Any]:
        """Groups of duplicate files, each with a suggested keeper (`xmr dupes`)."""
        lib = state.library()
        t0 = time.perf_counter()
        with state.compute:
            groups = lib.dupes(threshold=threshold, modality=None if type == "any" else type)
        return {"groups": [g.to_dict() for g in groups], "threshold": threshold,
                "took_ms": round((time.perf_counter() - t0) * 1000, 2)}

    @app.get("/api/items/{item_id}", tags=["items"])
    def item(item_id: int) -> dict[str, Any]:
        """An item and its file: path, kind, snippet or time window, size, when indexed."""
        info = state.library().item(item_id)
        info["media_url"] = f"/api/items/{item_id}/media"
        if get_kind(info["modality"]).has_thumbnail:
            info["thumbnail_url"] = f"/api/items/{item_id}/thumbnail"
        return info

    @app.get("/api/items/{item_id}/similar", tags=["search"])
    def similar(item_id: int, type: Modality = "any", k: Annotated[int, Param(ge=1, le=MAX_RESULTS)] = 10,
                offset: Annotated[int, Param(ge=0, lt=MAX_RESULTS)] = 0) -> dict[str, Any]:
        """More like this: the items nearest to this one, from other files."""
        lib = state.library()
        if k + offset > MAX_RESULTS:
            raise UsageError(f"k + offset may be at most {MAX_RESULTS:,}")
        t0 = time.perf_counter()
        with state.compute:
            hits = lib.similar(item_id, k=k + offset, modality=type)[offset:]
        return {"library": str(lib.path.resolve()), "hits": [h.to_dict() for h in hits], "k": k, "offset": offset,
                "more": len(hits) == k, "took_ms": round((time.perf_counter() - t0) * 1000, 2)}

    @app.get("/api/items/{item_id}/media", tags=["items"])
    def media(item_id: int) -> FileResponse:
        """The item's file itself (HTTP range requests work, so audio players can seek)."""
        info, st = indexed_file(state.library(), item_id)
        name = os.path.basename(info["path"]).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return FileResponse(info["path"], stat_result=st, media_type=media_type(info), filename=name,
                            content_disposition_type="inline", headers={"Cache-Control": "private, max-age=300"})

    app.add_api_route("/api/items/{item_id}/media", media, methods=["HEAD"], include_in_schema=False)

    @app.get("/api/items/{item_id}/thumbnail", tags=["items"])
    def item_thumbnail(item_id: int, size: Annotated[int, Param(description=f"one of {THUMBNAIL_SIZES}")] = 256) -> FileResponse:
        """A JPEG thumbnail of a picture item, cached in the library."""
        path = thumbnail(state.library(), item_id, size)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    add_clip_retrieval_routes(app, state, allow_image_urls=allow_image_urls, max_upload=max_upload)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return Guard(app, token=token, max_upload=max_upload, allowed_hosts=allowed_hosts, cors=cors)
