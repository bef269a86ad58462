"""The HTTP API and the web page (FastAPI), over one warm LibraryState.

JSON errors are {"detail": message} with the status the error deserves: 400 a bad query,
404 an unknown item, 413 an upload over the limit, 422 a malformed request or an upload that
cannot be decoded, 503 a library or model that cannot be used.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from fastapi import FastAPI, Query as Param, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from indexer.kinds import get_kind
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
from retrieval.querylang import kinds
from retrieval.server.clip_compat import add_clip_retrieval_routes
from retrieval.server.media import THUMBNAIL_SIZES, indexed_file, media_type, thumbnail
from retrieval.server.people_routes import add_people_routes
from retrieval.server.search_routes import add_search_routes
from retrieval.server.security import DEFAULT_MAX_UPLOAD, Guard
from retrieval.server.state import LibraryState

STATIC = Path(__file__).parent / "static"


def _modality_enum() -> Any:
    """"any" or a registered kind (indexer.kinds): the API's enum follows the kinds xmr knows."""
    return Literal.__getitem__(kinds())


Modality = _modality_enum()


_STATUS = [(UsageError, 400), (NotFoundError, 404), (DecodeError, 422), (EncoderMismatchError, 503),
           (ModelLoadError, 503), (LibraryError, 503)]


def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one message, as every other error answers ({"detail": message})."""
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)


def _xmr_error(request: Request, exc: XmrError) -> JSONResponse:
    """A library error with the status it deserves (_STATUS)."""
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
    return JSONResponse({"detail": str(exc)}, status_code=status)


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

    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(XmrError, _xmr_error)  # type: ignore[arg-type]
    @app.get("/api/health", tags=["library"])
    def health() -> dict[str, Any]:
        """Is the server up, and for which library."""
        lib = state.library()
        return {"status": "ok", "pid": os.getpid(), "reloads": state.reloads, **state.describe(lib),
                "watch": state.watch_status()}

    @app.get("/api/stats", tags=["library"])
    def stats() -> dict[str, Any]:
        """What `xmr stats --json` prints."""
        lib = state.library()
        return {**lib.stats(), "library": str(lib.path.resolve())}

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

    add_search_routes(app, state)
    add_people_routes(app, state)
    add_clip_retrieval_routes(app, state, allow_image_urls=allow_image_urls, max_upload=max_upload)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return Guard(app, token=token, max_upload=max_upload, allowed_hosts=allowed_hosts, cors=cors)
