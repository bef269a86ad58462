"""clip-retrieval's back-end API over xmr, so that its `ClipClient` and clip-front work unchanged.

    POST /knn-service   {text | image (base64) | image_url | embedding_input, modality,
                         num_images, num_result_ids, ...}  ->  [{id, similarity, url, caption}]
    GET  /indices-list  ->  ["<library name>"]
    POST /metadata      {ids}  ->  [{id, metadata: {url, caption, ...}}]
    GET  /config.json   what clip-front reads at start (its back end and index)

Bodies are JSON whatever their Content-Type says (ClipClient sends none, clip-front sends
text/plain). Searches are by meaning only (mode "semantic"), so `similarity` is the cosine, as
clip-retrieval answers it. Fields that xmr has no use for (indice_name, use_mclip, deduplicate,
the safety and aesthetic options) are accepted and ignored. `url` is an absolute address on this
server (a picture's or a video moment's thumbnail, otherwise the file), so a page of another
origin can show it; it keeps the /t/TOKEN prefix a request came through (see security.Guard).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import tempfile
import urllib.error
import urllib.request
from typing import Any, Optional, Union

import numpy as np
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from indexer.kinds import get_kind, kind_names
from retrieval.cutoff import MAX_RESULTS
from retrieval.errors import DecodeError, NotFoundError, UsageError
from retrieval.query import Query
from retrieval.server.security import PREFIX_KEY
from retrieval.server.state import LibraryState

URL_TIMEOUT_S = 10.0


class KnnRequest(BaseModel):
    """A clip-retrieval knn query; unknown fields are ignored, as clip-retrieval's back end does."""

    model_config = ConfigDict(extra="ignore")

    text: Optional[str] = None
    image: Optional[str] = Field(None, description="base64 of a picture file's bytes")
    image_url: Optional[str] = None
    embedding_input: Optional[list[float]] = None
    modality: str = Field("image", description="the kind of results: 'image', 'text', another xmr kind, or 'any'")
    num_images: int = Field(40, ge=0, le=MAX_RESULTS, description="results that carry url and caption")
    num_result_ids: Optional[int] = Field(None, ge=0, le=MAX_RESULTS, description="results in all")
    # Accepted for clip-retrieval's clients; xmr has no such index, model or filter.
    indice_name: Optional[str] = None
    use_mclip: Any = None
    deduplicate: Any = None
    use_safety_model: Any = None
    use_violence_detector: Any = None
    aesthetic_score: Union[int, str, None] = None
    aesthetic_weight: Union[float, str, None] = None


class MetadataRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ids: list[int] = Field(default_factory=list, max_length=MAX_RESULTS)
    indice_name: Optional[str] = None


async def _json_body(request: Request, model: type[BaseModel]) -> Any:
    """The body parsed as JSON whatever its Content-Type, checked against `model` (400 if not)."""
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"the body is not JSON: {e}") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        parts = [f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()]
        raise UsageError("; ".join(parts)) from None


def base_url(request: Request) -> str:
    """This server's address as the client used it, with the token prefix if it came through one."""
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"{request.url.scheme}://{host}{request.scope.get(PREFIX_KEY, '')}"


def item_metadata(info: dict[str, Any], base: str) -> dict[str, Any]:
    """What clip-retrieval's metadata columns hold, from an xmr item: url, caption, and xmr's own."""
    item_id = info["item_id"]
    kind = get_kind(info["modality"])
    url = f"{base}/api/items/{item_id}/thumbnail?size=512" if kind.has_thumbnail else f"{base}/api/items/{item_id}/media"
    caption = info.get("snippet") or os.path.basename(info["path"])
    return {"url": url, "caption": caption, "path": info["path"], "modality": info["modality"],
            "media_url": f"{base}/api/items/{item_id}/media"}


def _modality(name: str) -> str | None:
    if name == "any":
        return None
    if name not in kind_names():
        raise UsageError(f"modality must be 'image', 'text', 'any' or one of {', '.join(kind_names())}, not {name!r}")
    return name


def fetch_image(url: str, limit: int) -> bytes:
    """The bytes at an http(s) `url`, at most `limit` of them, within URL_TIMEOUT_S per read."""
    if not url.lower().startswith(("http://", "https://")):
        raise UsageError("image_url must be an http:// or https:// address")
    req = urllib.request.Request(url, headers={"User-Agent": "xmr (clip-retrieval compatible knn-service)"})
    try:
        with urllib.request.urlopen(req, timeout=URL_TIMEOUT_S) as r:  # noqa: S310 (scheme checked above)
            data = r.read(limit + 1)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DecodeError(f"could not fetch image_url: {getattr(e, 'reason', e)}") from None
    if len(data) > limit:
        raise UsageError(f"image_url is larger than the server's limit of {limit / 2**20:g} MiB")
    return data


def add_clip_retrieval_routes(app: Any, state: LibraryState, *, allow_image_urls: bool = False,
                              max_upload: int) -> None:
    """Mount clip-retrieval's routes on `app`."""

    def search(lib: Any, body: KnnRequest, image_path: str | None, base: str) -> list[dict[str, Any]]:
        given = [x for x in (body.text, body.image, body.image_url, body.embedding_input) if x not in (None, "", [])]
        if len(given) != 1:
            raise UsageError("give exactly one of text, image, image_url and embedding_input")
        total = body.num_result_ids if body.num_result_ids is not None else body.num_images
        k = max(total, body.num_images)
        if k == 0:
            return []
        modality = _modality(body.modality)
        vector = None
        query = None
        if body.embedding_input is not None:
            vector = np.asarray(body.embedding_input, dtype=np.float32)
            dim = lib.recorded_identity["dim"] if lib.recorded_identity else None
            if dim is not None and vector.shape != (dim,):
                raise UsageError(f"embedding_input has {vector.size} numbers; this library's vectors have {dim}")
            norm = float(np.linalg.norm(vector))
            if not math.isfinite(norm) or norm == 0:
                raise UsageError("embedding_input must be finite and not all zero")
            vector = vector / norm
        elif body.text is not None:
            query = Query(texts=[body.text])
        else:
            query = Query(images=[image_path], names={image_path: "image"})
        if query is not None:
            query.validate()
        if lib.recorded_identity is None:  # an empty library: nothing to find, no model to load
            return []
        with state.compute:
            hits = lib.search(query, vector=vector, k=k, type=modality or (), mode="semantic")
        out = []
        for n, h in enumerate(hits):
            row: dict[str, Any] = {"id": h.item_id, "similarity": h.cosine if h.cosine is not None else h.score}
            if n < body.num_images:
                meta = item_metadata({"item_id": h.item_id, "modality": h.modality, "path": h.path, "snippet": h.snippet}, base)
                row = {**meta, **row}
            out.append(row)
        return out

    @app.post("/knn-service", tags=["clip-retrieval"])
    async def knn_service(request: Request) -> Any:
        """clip-retrieval's knn query (ClipClient.query, clip-front's searches)."""
        body = await _json_body(request, KnnRequest)
        lib = state.library()
        base = base_url(request)
        data = None
        if body.image:
            try:
                data = base64.b64decode(body.image, validate=True)
            except (binascii.Error, ValueError):
                raise UsageError("image must be the base64 of a picture file") from None
        elif body.image_url:
            if not allow_image_urls:
                raise UsageError("this server does not fetch image_url (start it with `xmr serve --allow-image-urls`); "
                                 "send the picture's bytes as image instead")
            data = await run_in_threadpool(fetch_image, body.image_url, max_upload)
        if data is None:
            return await run_in_threadpool(search, lib, body, None, base)
        with tempfile.TemporaryDirectory(prefix="xmr-knn-") as tmp:
            path = os.path.join(tmp, "image")
            with open(path, "wb") as f:
                f.write(data)
            return await run_in_threadpool(search, lib, body, path, base)

    @app.get("/indices-list", tags=["clip-retrieval"])
    def indices_list() -> list[str]:
        """The one index a server holds: its library's name."""
        return [index_name(state)]

    @app.post("/metadata", tags=["clip-retrieval"])
    async def metadata(request: Request) -> list[dict[str, Any]]:
        """url and caption (and xmr's path and kind) of items by id; unknown ids are left out."""
        body = await _json_body(request, MetadataRequest)
        lib = state.library()
        base = base_url(request)
        out = []
        for item_id in body.ids:
            try:
                info = lib.item(item_id)
            except NotFoundError:
                continue
            out.append({"id": item_id, "metadata": item_metadata(info, base)})
        return out

    @app.get("/config.json", tags=["clip-retrieval"])
    def config_json(request: Request) -> dict[str, Any]:
        """clip-front's settings: this server as its back end, the library as its index."""
        return {"defaultBackend": base_url(request), "defaultIndex": index_name(state), "urlColumn": "url"}


def index_name(state: LibraryState) -> str:
    """The name clip-retrieval's clients know the library by: its folder's name."""
    return state.path.resolve().name or "xmr"
