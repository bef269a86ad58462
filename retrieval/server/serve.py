"""`xmr serve`: load everything once, listen, announce, answer until stopped."""

from __future__ import annotations

import ipaddress
import logging
import socket
from urllib.parse import urlsplit
from dataclasses import dataclass
from typing import Any, Callable

from retrieval.errors import UsageError, XmrError
from retrieval.server import discovery
from retrieval.server.security import DEFAULT_MAX_UPLOAD

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port). Bound here, before the server starts, so the
    discovery file can name the real port."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise XmrError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(2048)
    return sock


@dataclass(frozen=True)
class ServeOptions:
    """How `xmr serve` listens and whom it answers (its options)."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    max_upload: int = DEFAULT_MAX_UPLOAD
    access_log: bool = False
    cors: tuple[str, ...] = ()
    allow_image_urls: bool = False
    ray: str | None = None  # a Ray cluster whose actors hold the library's shards (retrieval.sharded)
    watch: bool = False  # index what changes in the library's folders (an `xmr index --watch` child)


def serve(library: str | None, options: ServeOptions | None = None, *, db: str | None = None, device: str = "auto",
          on_ready: Callable[[str], None] | None = None, **fields: Any) -> None:
    """Serve `library` until SIGINT/SIGTERM (`options`, or ServeOptions' fields). Binding beyond
    loopback needs a token."""
    o = options or ServeOptions(**fields)
    host, port, token, cors, ray = o.host, o.port, o.token, o.cors, o.ray
    if not is_loopback(host) and not token:
        raise UsageError(
            f"--host {host} would let other machines read your library; give a --token "
            "(or set XMR_TOKEN), and every request will need it"
        )
    import uvicorn

    from retrieval.server.app import create_app
    from retrieval.server.state import LibraryState

    state = LibraryState(library, db=db, device=device)
    if o.watch:
        from retrieval.watching import library_roots

        if not library_roots(state.library()):
            raise UsageError("--watch: the library has no folders yet; index one first (xmr index PATH)")
    if ray is not None:
        from retrieval.sharded import open_sharded

        lib = state.library()
        lib.store.remote = open_sharded(None if ray == "local" else ray, lib.store)
    state.warm()
    for origin in cors:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise UsageError(f"--cors {origin!r}: give an origin, such as http://127.0.0.1:1235")
    app = create_app(state, token=token, max_upload=o.max_upload, allowed_hosts=(host,), cors=cors,
                     allow_image_urls=o.allow_image_urls)
    sock = listen(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="info" if o.access_log else "warning", access_log=o.access_log,
                            proxy_headers=False, server_header=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    discovery.write(state.path, host=host, port=bound_port, db=db, token=token)
    url = discovery.base_url(host, bound_port)
    if on_ready:
        on_ready(url + (f"/?token={token}" if token else "/"))
    child = None
    if o.watch:
        from retrieval.watching import ChildWatcher

        child = state.watcher = ChildWatcher(state.path, db, device)
    try:
        server.run(sockets=[sock])
    finally:
        if child is not None:
            child.stop()
        discovery.remove(state.path)
        sock.close()
