"""What stands in front of every request: who may ask, how much they may send, and the headers
that keep the browser from doing anything the page did not mean.

- Bound to loopback without a token, requests must name a loopback host in `Host`; that stops a
  web page elsewhere from reaching the server through DNS rebinding.
- With a token (required to bind anywhere else), every request carries it: `Authorization:
  Bearer TOKEN`, the `xmr_token` cookie, or `?token=` once (which sets the cookie, as Jupyter does).
- The API answers only its own page and programs, not other web sites: a browser request to
  /api/ (or any request that is not a GET) from another origin is refused (403), told by the
  browser's `Sec-Fetch-Site` or `Origin` header. A page elsewhere could otherwise make the
  server run searches or decode uploaded bytes (a "simple" cross-site POST needs no preflight).
  Programs (curl, `xmr search`) send neither header; bound beyond loopback they need the token.
- `cors` origins (`xmr serve --cors ORIGIN`, off by default) may use the API from their pages:
  preflights are answered, answers carry Access-Control-Allow-Origin, and pictures and media may
  be embedded by other origins (Cross-Origin-Resource-Policy: cross-origin on /api/items/ only).
  Pages such as clip-front cannot send a header or a cookie to another origin, so with a token
  the address itself may carry it: http://HOST:PORT/t/TOKEN/... (the prefix is removed, and kept
  in the addresses answers give, see clip_compat).
- Request bodies over `max_upload` bytes get 413, whether announced by Content-Length or not.
- Responses forbid framing, sniffing and any script or media from elsewhere (CSP).
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.exceptions import HTTPException

DEFAULT_MAX_UPLOAD = 32 * 1024 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
COOKIE = "xmr_token"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
TOKEN_PREFIX = "/t/"
PREFIX_KEY = "xmr.prefix"  # where a removed /t/TOKEN prefix is left in the scope
EMBEDDABLE = re.compile(r"/api/items/\d+/(thumbnail|media)")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def host_of(header: str) -> str:
    """'example.com:8765' -> 'example.com', '[::1]:8765' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware around the whole app."""

    def __init__(self, app: Any, *, token: str | None, max_upload: int = DEFAULT_MAX_UPLOAD,
                 allowed_hosts: tuple[str, ...] = (), cors: tuple[str, ...] = ()) -> None:
        self.app = app
        self.cors = {o.rstrip("/").lower() for o in cors}
        self.token = token or None
        self.max_upload = max_upload
        self.allowed_hosts = {h.lower().strip("[]") for h in (*LOOPBACK_HOSTS, *allowed_hosts)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        started = False
        origin = headers.get("origin", "").rstrip("/").lower()
        allowed_origin = origin in self.cors
        scope, by_prefix = self._token_prefix(scope)
        extra = list(SECURITY_HEADERS)
        embeddable = bool(self.cors) and EMBEDDABLE.fullmatch(scope["path"]) is not None
        extra.append((b"cross-origin-resource-policy", b"cross-origin" if embeddable else b"same-origin"))
        if allowed_origin:
            extra += [(b"access-control-allow-origin", headers["origin"].encode("latin-1")), (b"vary", b"Origin")]

        async def send_guarded(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if allowed_origin and scope.get("method") == "OPTIONS" and "access-control-request-method" in headers:
            await send_guarded({"type": "http.response.start", "status": 204, "headers": [
                (b"access-control-allow-methods", b"GET, HEAD, POST, PATCH, DELETE, OPTIONS"),
                (b"access-control-allow-headers", b"Authorization, Content-Type"),
                (b"access-control-max-age", b"600")]})
            await send_guarded({"type": "http.response.body", "body": b""})
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        refusal = None if by_prefix else self._refuse(headers, query)
        if by_prefix is False:
            refusal = (401, "wrong token in the address (/t/TOKEN/...)")
        if refusal is None and not allowed_origin and not (embeddable and scope.get("method") in ("GET", "HEAD")):
            refusal = _cross_site(scope, headers)
        if refusal is not None:
            await _json(send_guarded, *refusal)
            return
        if self.token and "token" in query:
            # A link with ?token=: keep it in a cookie and drop it from the address bar.
            rest = {k: v for k, v in query.items() if k != "token"}
            path = "/" + scope["path"].lstrip("/")  # never "//host": that would leave this server
            location = path + (f"?{urlencode(rest, doseq=True)}" if rest else "")
            cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            await send_guarded({"type": "http.response.start", "status": 303,
                                "headers": [(b"location", location.encode("latin-1", "replace")), (b"set-cookie", cookie.encode())]})
            await send_guarded({"type": "http.response.body", "body": b""})
            return

        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_upload:
            await _json(send_guarded, 413, self._too_large())
            return
        received = 0

        async def receive_limited() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_upload:
                    # An HTTPException, so FastAPI answers it as such even mid-way through parsing a form.
                    raise HTTPException(413, self._too_large())
            return message

        try:
            await self.app(scope, receive_limited, send_guarded)
        except HTTPException as e:
            if started or e.status_code != 413:
                raise
            await _json(send_guarded, 413, self._too_large())

    def _token_prefix(self, scope: Scope) -> tuple[Scope, bool | None]:
        """A request to /t/TOKEN/rest: (scope for /rest, whether the token is right); else (scope, None)."""
        path = scope["path"]
        if not self.token or not path.startswith(TOKEN_PREFIX):
            return scope, None
        offered, _, rest = path[len(TOKEN_PREFIX):].partition("/")
        if not hmac.compare_digest(offered.encode(), self.token.encode()):
            return scope, False
        rest = "/" + rest
        return {**scope, "path": rest, "raw_path": rest.encode("utf-8", "replace"), PREFIX_KEY: TOKEN_PREFIX + offered}, True

    def _too_large(self) -> str:
        return f"upload larger than the server's limit of {self.max_upload / 2**20:g} MiB (xmr serve --max-upload)"

    def _refuse(self, headers: dict[str, str], query: dict[str, list[str]]) -> tuple[int, str] | None:
        if self.token is None:
            if host_of(headers.get("host", "")) not in self.allowed_hosts:
                return 421, "this server only answers requests addressed to it by a loopback name (127.0.0.1, localhost)"
            return None
        offered = [
            headers.get("authorization", "").removeprefix("Bearer ").strip(),
            *_cookies(headers.get("cookie", "")).get(COOKIE, []),
            *query.get("token", []),
        ]
        if any(o and hmac.compare_digest(o.encode(), self.token.encode()) for o in offered):
            return None
        return 401, "this server needs its token: open the address `xmr serve` printed (with ?token=...), or send Authorization: Bearer TOKEN"


def _cross_site(scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
    """Refuse a browser's request to the API (or any non-GET request) made by a page of another
    origin. Navigating to the page itself from a link elsewhere stays possible."""
    if scope.get("method", "GET") in ("GET", "HEAD") and not scope["path"].startswith("/api/"):
        return None
    site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    refused = (403, "cross-site request refused: the xmr API answers its own page and programs, not other web sites")
    if site is not None and site not in ("same-origin", "none"):
        return refused
    if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != headers.get("host", "").lower()):
        return refused
    return None


def _cookies(header: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            out.setdefault(name, []).append(value)
    return out


async def _json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
