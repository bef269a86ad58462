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


def search(
    info: dict[str, Any],
    *,
    texts: Sequence[str],
    negatives: Sequence[str],
    images: Sequence[str],
    audios: Sequence[str],
    weight: float | None,
    not_weight: float,
    modality: str,
    k: int,
    group: bool = False,
    mode: str = "hybrid",
    extra: dict[str, Any] | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """POST the query to the server in `info` (a discovery record); its JSON answer."""
    for t in [*texts, *negatives]:
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 (from argv): the local search takes them as they are
            raise ServerUnavailable("the query is not valid UTF-8") from None
    if images or audios:
        fields = [("type", modality), ("k", str(k)), ("not_weight", str(not_weight)), ("group", str(group).lower()),
                  ("mode", mode)]
        fields += [("q", t) for t in texts] + [("not", t) for t in negatives]
        for key, value in (extra or {}).items():  # filters, paging, sort, cutoff
            fields += [(key, str(v)) for v in (value if isinstance(value, list) else [value])]
        if weight is not None:
            fields.append(("weight", str(weight)))
        body, ctype = _multipart(fields, [("image", p) for p in images] + [("audio", p) for p in audios])
        url = info["url"] + "/api/search/upload"
    else:
        query = {"q": list(texts), "not": list(negatives), "not_weight": not_weight, "type": modality, "k": k, "group": group,
                 "mode": mode, **(extra or {})}
        body, ctype = json.dumps(query).encode(), "application/json"
        url = info["url"] + "/api/search"
    request = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    return _open(info, request, timeout)


def _detail(e: "urllib.error.HTTPError") -> str:
    try:
        detail = json.loads(e.read() or b"{}").get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
    return str(detail or e.reason)
