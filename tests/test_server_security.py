"""Safe by default: loopback only unless a token is set, bounded uploads, guarded decoders, and no
request can read anything but the library's indexed files."""

from __future__ import annotations

import os
import struct
import zlib

import pytest

from tests.conftest import run_xmr
from tests.test_server_api import make_client

SECRET = "TOP-SECRET-4711"


def png_claiming(width: int, height: int) -> bytes:
    """A valid little PNG whose header says width x height: a decompression bomb as PIL sees it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def small_lib(tmp_path_factory, random_model):
    """A picture, a note, an HTML-looking note and a secret file outside the library."""
    from PIL import Image

    from retrieval import Library

    root = tmp_path_factory.mktemp("secure")
    media = root / "media"
    media.mkdir()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(media / "red.png")
    Image.new("RGB", (64, 48), (30, 30, 200)).save(media / "blue.png")
    (media / "note.txt").write_text("a note about red things")
    (media / "page.md").write_text("<script>alert(document.cookie)</script> <img src=x onerror=alert(1)>")
    (root / "secret.txt").write_text(SECRET)
    lib = Library(root / "lib", model=random_model, create=True)
    lib.index([media])
    return root, lib


def ids_by_name(client) -> dict[str, int]:
    hits = client.get("/api/search", params={"q": "anything", "k": 20}).json()["hits"]
    return {os.path.basename(h["path"]): h["item_id"] for h in hits}


def test_loopback_without_token_refuses_foreign_host_names(small_lib):
    _, lib = small_lib
    client, _ = make_client(lib.path)
    assert client.get("/api/health").status_code == 200
    for host in ("evil.example", "192.168.1.20:8765", "127.0.0.1.evil.example", "localhost.evil:80"):
        r = client.get("/api/health", headers={"host": host})
        assert r.status_code == 421, host  # DNS rebinding: a page elsewhere cannot read the library
    assert client.get("/api/health", headers={"host": "localhost:8765"}).status_code == 200
    assert client.get("/api/health", headers={"host": "[::1]:8765"}).status_code == 200


def test_other_web_sites_cannot_use_the_api(small_lib):
    """A page of another origin may not run searches or make the server decode uploads, even as a
    "simple" request a browser sends without asking first; the page's own requests still work."""
    _, lib = small_lib
    client, _ = make_client(lib.path)
    import io

    from PIL import Image

    own = {"origin": "http://127.0.0.1:8765", "sec-fetch-site": "same-origin"}
    picture = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(picture, "PNG")
    png = {"image": ("x.png", picture.getvalue(), "image/png")}
    for headers in ({"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"},
                    {"sec-fetch-site": "same-site", "origin": "http://127.0.0.1:9999"}, {"origin": "null"}):
        assert client.get("/api/search", params={"q": "red"}, headers=headers).status_code == 403, headers
        assert client.post("/api/search", json={"q": ["red"]}, headers=headers).status_code == 403, headers
        r = client.post("/api/search/upload", files=png, headers=headers)
        assert r.status_code == 403 and "cross-site" in r.json()["detail"], headers
    assert client.get("/api/search", params={"q": "red"}, headers=own).status_code == 200
    assert client.post("/api/search/upload", files=png, data={"type": "image"}, headers=own).status_code == 200
    assert client.get("/api/search", params={"q": "red"}, headers={"sec-fetch-site": "none"}).status_code == 200
    assert client.get("/api/search", params={"q": "red"}).status_code == 200  # a program: no browser headers
    # The page itself may be opened from a link on another site.
    assert client.get("/", headers={"sec-fetch-site": "cross-site"}).status_code == 200


def test_binding_beyond_loopback_needs_a_token(small_lib):
    _, lib = small_lib
    r = run_xmr("--library", str(lib.path), "serve", "--host", "0.0.0.0", "--port", "0", timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--token" in r.stderr and "Traceback" not in r.stderr


def test_token_is_needed_on_every_request(small_lib):
    _, lib = small_lib
    client, _ = make_client(lib.path, token="s3cret-token", allowed_hosts=("0.0.0.0",))
    for path in ("/", "/api/health", "/api/search?q=red", "/static/app.js", "/openapi.json"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert "token" in r.json()["detail"]
    assert client.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/api/health", headers={"Authorization": "Bearer s3cret-token", "host": "192.168.1.20:8765"})
    assert ok.status_code == 200  # with a token any Host may be used (the server was bound for it)
    # ?token= once: the cookie carries it afterwards, and the address loses it
    r = client.get("/?token=s3cret-token", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
    assert client.get("/api/search", params={"q": "red"}).status_code == 200  # the cookie it just set
    # a raw "//host/..." path must not turn the redirect into one to another site
    import asyncio

    from retrieval.server.security import Guard

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "//evil.example/x", "query_string": b"token=s3cret-token", "headers": []}
    asyncio.run(Guard(None, token="s3cret-token")(scope, receive, send))
    assert sent[0]["status"] == 303 and dict(sent[0]["headers"])[b"location"] == b"/evil.example/x"
    client.cookies.clear()
    client.cookies.set("xmr_token", "nope")
    assert client.get("/api/search", params={"q": "red"}).status_code == 401


def test_uploads_over_the_limit_get_413(small_lib):
    _, lib = small_lib
    client, _ = make_client(lib.path, max_upload=100_000)
    big = b"\x00" * 200_000
    r = client.post("/api/search/upload", files={"image": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b"\x00" * 10_000

    r = client.post("/api/search/upload", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413
    small = client.post("/api/search/upload", data={"q": "red"})
    assert small.status_code == 200


def test_uploads_go_through_the_guarded_decoders(small_lib):
    _, lib = small_lib
    client, _ = make_client(lib.path)
    bomb = png_claiming(30000, 30000)
    assert len(bomb) < 200
    r = client.post("/api/search/upload", files={"image": ("bomb.png", bomb, "image/png")})
    assert r.status_code == 400 and "too large to decode safely" in r.json()["detail"]
    r = client.post("/api/search/upload", files={"image": ("half.png", png_claiming(64, 64)[:30], "image/png")})
    assert r.status_code == 400 and "image 'half.png'" in r.json()["detail"]
    # upload names never become paths
    r = client.post("/api/search/upload", files={"image": ("../../../../etc/passwd", b"x", "image/png")})
    assert r.status_code == 400 and "root:" not in r.text


def test_media_only_by_id_and_only_while_it_is_the_indexed_file(small_lib, tmp_path):
    root, lib = small_lib
    client, _ = make_client(lib.path)
    ids = ids_by_name(client)
    for path in ("/api/items/abc/media", "/api/items/-1/media", "/api/items/0/media", "/api/items/99999/media",
                 f"/api/items/{ids['red.png']}%2f..%2f..%2fsecret.txt/media", "/api/items//etc/passwd/media"):
        r = client.get(path)
        assert r.status_code in (404, 422), path
        assert SECRET not in r.text and "root:" not in r.text
    # an HTML-looking text file is served as plain text, never as a page
    r = client.get(f"/api/items/{ids['page.md']}/media")
    assert r.headers["content-type"] == "text/plain; charset=utf-8" and r.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in r.headers["content-security-policy"]

    # swapped for a symlink to a secret after indexing: refused, not followed
    victim = root / "media" / "blue.png"
    blue = victim.read_bytes()
    victim.unlink()
    victim.symlink_to(root / "secret.txt")
    try:
        for suffix in ("media", "thumbnail"):
            r = client.get(f"/api/items/{ids['blue.png']}/{suffix}")
            assert r.status_code == 404 and SECRET not in r.text
            assert "changed since it was indexed" in r.json()["detail"]
    finally:
        victim.unlink()
        victim.write_bytes(blue)
    # gone altogether
    (root / "media" / "note.txt").rename(root / "moved.txt")
    try:
        r = client.get(f"/api/items/{ids['note.txt']}/media")
        assert r.status_code == 404 and "gone" in r.json()["detail"]
    finally:
        (root / "moved.txt").rename(root / "media" / "note.txt")
