"""Ask a running `xmr serve` instead of loading the model: what makes `xmr search` fast.

Standard library only (urllib): importing an HTTP client library would cost more than the
whole round trip. Any failure to reach the server raises ServerUnavailable and the caller
searches in-process instead; answers the server gives (a bad query, say) are final.
"""

from __future__ import annotations

import json
import mimetypes
import os
import uuid
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from retrieval.errors import UsageError, XmrError
from retrieval.request import SearchRequest, specs


class ServerUnavailable(Exception):
    """No usable server: search in-process."""


def _multipart(fields: Sequence[tuple[str, str]], files: Sequence[tuple[str, str]]) -> tuple[bytes, str]:
    """multipart/form-data body for (name, value) fields and (name, path) files.
    (The standard library has no encoder for it; this is the whole format.)"""
    boundary = uuid.uuid4().hex
    out: list[bytes] = []
    for name, value in fields:
        out += [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n".encode(), value.encode(), b"\r\n"]
    for name, path in files:
        filename = os.path.basename(path).replace('"', "_").replace("\r", "_").replace("\n", "_")
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        out.append(
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {ctype}\r\n\r\n".encode("utf-8", "surrogateescape")
        )
        out += [Path(path).read_bytes(), b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def _open(info: dict[str, Any], request: "urllib.request.Request", timeout: float) -> Any:
    """Send `request` to the server in `info`; its JSON answer, or the right exception."""
    if info.get("token"):
        request.add_header("Authorization", f"Bearer {info['token']}")
    request.add_header("Accept", "application/json")
    # A proxy from the environment must never see a local query.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as resp:
            answer = json.load(resp)
    except urllib.error.HTTPError as e:
        detail = _detail(e)
        if e.code in (400, 422):
            raise UsageError(detail) from None
        # not our server, not for us, or a file larger than it takes: the in-process search can
        if e.code in (401, 403, 404, 413, 421):
            raise ServerUnavailable(f"{e.code} {detail}") from None
        raise XmrError(f"server at {info['url']}: {detail}") from None
    except (OSError, ValueError) as e:  # refused, timed out, reset, not JSON
        raise ServerUnavailable(str(e)) from None
    if not isinstance(answer, dict) or answer.get("library") != info.get("library"):
        raise ServerUnavailable("the server answers for another library")
    return answer


def get(info: dict[str, Any], path: str, timeout: float = 30.0) -> dict[str, Any]:
    """GET an API path (e.g. /api/stats) from the server in `info`."""
    return _open(info, urllib.request.Request(info["url"] + path), timeout)


def search(info: dict[str, Any], request: SearchRequest, timeout: float = 60.0) -> dict[str, Any]:
    """Put a request (retrieval.request) to the server in `info` (a discovery record); its JSON
    answer. Pictures and sounds go as uploads, the rest as the API's parameters."""
    for t in [*request.q, *request.negatives]:
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 (from argv): the local search takes them as they are
            raise ServerUnavailable("the query is not valid UTF-8") from None
    if request.videos:
        raise ServerUnavailable("a video query is decoded in-process")
    wire = request.to_wire()
    files = [(spec.files, p) for f, spec in specs() if spec.files for p in getattr(request, f.name)]
    if files:
        fields = [(key, _form(v)) for key, value in wire.items() for v in (value if isinstance(value, list) else [value])]
        body, ctype = _multipart(fields, files)
        url = info["url"] + "/api/search/upload"
    else:
        body, ctype = json.dumps(wire).encode(), "application/json"
        url = info["url"] + "/api/search"
    http = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    return _open(info, http, timeout)


def _form(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _detail(e: "urllib.error.HTTPError") -> str:
    try:
        detail = json.loads(e.read() or b"{}").get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
    return str(detail or e.reason)
