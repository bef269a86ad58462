"""clip-retrieval's clients against xmr: the real `ClipClient` (from the clip-retrieval wheel the
test environment installs) and clip-front's built page, over the trained tiny model's library."""

from __future__ import annotations

import base64
import http.server
import importlib.metadata
import importlib.util
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from scripts.synthetic import CONCEPTS
from tests.conftest import caption_notes_and_pictures, live_server
from tests.test_server_api import BASE, make_client

FRONT = "http://127.0.0.1:1235"


def clip_retrieval_file(path: str) -> Path:
    """A file of the installed clip-retrieval distribution (installed --no-deps: its package
    __init__ imports its whole back end, so the client module is loaded from its file)."""
    try:
        dist = importlib.metadata.distribution("clip-retrieval")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("clip-retrieval is not installed; `make test` installs it (pip install --no-deps clip-retrieval)")
    found = Path(str(dist.locate_file(path)))
    assert found.exists(), found
    return found


def clip_client_class():
    spec = importlib.util.spec_from_file_location("clip_client", clip_retrieval_file("clip_retrieval/clip_client.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def client(trained_library):
    c, _ = make_client(trained_library.path, cors=(FRONT,), allow_image_urls=True)
    return c


def concept_of(path: str, samples) -> str:
    folder, manifest = samples
    return manifest[str(Path(path).relative_to(folder))]


def test_knn_service_reads_json_whatever_the_content_type(client, samples, trained_library):
    body = {"text": "a photo of a red circle", "modality": "image", "num_images": 3, "num_result_ids": 6,
            "indice_name": "laion5B", "use_mclip": False, "deduplicate": True, "use_safety_model": True,
            "use_violence_detector": True, "aesthetic_score": "", "aesthetic_weight": ""}
    plain = client.post("/knn-service", content=json.dumps(body), headers={"Content-Type": "text/plain;charset=UTF-8"})
    none = client.post("/knn-service", content=json.dumps(body))
    assert plain.status_code == none.status_code == 200, plain.text
    rows = plain.json()
    assert rows == none.json() and len(rows) == 6
    assert [sorted(r) for r in rows[:3]] == [sorted(["id", "similarity", "url", "caption", "path", "modality", "media_url"])] * 3
    assert [sorted(r) for r in rows[3:]] == [["id", "similarity"]] * 3
    sims = [r["similarity"] for r in rows]
    assert sims == sorted(sims, reverse=True) and all(-1 <= s <= 1 for s in sims)
    assert rows[0]["url"] == f"{BASE}/api/items/{rows[0]['id']}/thumbnail?size=512"
    assert concept_of(rows[0]["path"], samples) == "red circle"
    assert client.get(rows[0]["url"]).headers["content-type"] == "image/jpeg"
    # The same ranking as xmr's own semantic search.
    own = [h.item_id for h in trained_library.search("a photo of a red circle", k=6, type="image", mode="semantic")]
    assert [r["id"] for r in rows] == own
    # Text results: caption notes, their caption from the snippet.
    texts = client.post("/knn-service", content=json.dumps({"text": "a blue square", "modality": "text", "num_images": 2})).json()
    assert len(texts) == 2 and all(r["modality"] == "text" and r["caption"] and "/media" in r["url"] for r in texts)


def test_indices_metadata_config_and_errors(client, trained_library):
    name = trained_library.path.resolve().name
    assert client.get("/indices-list").json() == [name]
    assert client.get("/config.json").json() == {"defaultBackend": BASE, "defaultIndex": name, "urlColumn": "url"}
    ids = [r["id"] for r in client.post("/knn-service", content=json.dumps({"text": "a green star", "num_images": 0,
                                                                          "num_result_ids": 4})).json()]
    assert len(ids) == 4
    meta = client.post("/metadata", content=json.dumps({"ids": [*ids, 10**9], "indice_name": name})).json()
    assert [m["id"] for m in meta] == ids  # an unknown id is left out
    assert all(m["metadata"]["url"].startswith(BASE) and m["metadata"]["caption"] for m in meta)
    assert client.post("/metadata", content=json.dumps({"ids": []})).json() == []
    for body, status, words in [
        ("not json", 400, "not JSON"),
        (json.dumps({"modality": "image", "num_images": 3}), 400, "exactly one"),
        (json.dumps({"text": "x", "image": "aGk=", "num_images": 3}), 400, "exactly one"),
        (json.dumps({"text": "x", "modality": "hologram"}), 400, "modality"),
        (json.dumps({"text": "x", "num_images": -1}), 400, "num_images"),
        (json.dumps({"image": "%%% not base64", "num_images": 3}), 400, "base64"),
        (json.dumps({"image": base64.b64encode(b"not a picture").decode(), "num_images": 3}), 400, "image"),
        (json.dumps({"embedding_input": [0.1, 0.2], "num_images": 3}), 400, "numbers"),
        (json.dumps({"image_url": "file:///etc/passwd", "num_images": 3}), 400, "http"),
    ]:
        r = client.post("/knn-service", content=body)
        assert r.status_code == status, (body, r.text)
        assert words in r.json()["detail"], (body, r.json())
    assert client.post("/knn-service", content=json.dumps({"text": "x", "num_images": 0})).json() == []


def test_image_urls_are_fetched_only_when_allowed(client, samples, trained_library, tmp_path):
    folder, _, pictures = caption_notes_and_pictures(samples)
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(folder / pictures["green triangle"], site / "query.png")
    (site / "big.bin").write_bytes(b"\0" * (40 * 2**20))
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(site), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        rows = client.post("/knn-service", content=json.dumps({"image_url": f"{url}/query.png", "num_images": 2})).json()
        assert concept_of(rows[0]["path"], samples) == "green triangle", rows
        assert client.post("/knn-service", content=json.dumps({"image_url": f"{url}/big.bin", "num_images": 2})).status_code == 400
        assert client.post("/knn-service", content=json.dumps({"image_url": f"{url}/gone.png", "num_images": 2})).status_code == 422
        closed, _ = make_client(trained_library.path)  # the default: no fetching
        r = closed.post("/knn-service", content=json.dumps({"image_url": f"{url}/query.png", "num_images": 2}))
        assert r.status_code == 400 and "--allow-image-urls" in r.json()["detail"]
    finally:
        server.shutdown()


def test_cors_only_for_the_given_origin_and_the_token_in_the_address(trained_library):
    plain, _ = make_client(trained_library.path)
    body = json.dumps({"text": "a red circle", "num_images": 1})
    assert plain.post("/knn-service", content=body, headers={"Origin": FRONT}).status_code == 403
    thumb = plain.get("/api/items/1/thumbnail")
    assert thumb.headers["cross-origin-resource-policy"] == "same-origin"
    assert "access-control-allow-origin" not in thumb.headers

    c, _ = make_client(trained_library.path, cors=(FRONT,), token="s3cret")
    pre = c.options("/t/s3cret/knn-service", headers={"Origin": FRONT, "Access-Control-Request-Method": "POST",
                                                      "Access-Control-Request-Headers": "content-type"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == FRONT
    assert "POST" in pre.headers["access-control-allow-methods"]
    r = c.post("/t/s3cret/knn-service", content=body, headers={"Origin": FRONT})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == FRONT
    url = r.json()[0]["url"]
    assert url.startswith(f"{BASE}/t/s3cret/api/items/")  # the picture loads with the token too
    shown = c.get(url.removeprefix(BASE), headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Dest": "image"})
    assert shown.status_code == 200 and shown.headers["cross-origin-resource-policy"] == "cross-origin"
    assert c.get("/t/s3cret/config.json").json()["defaultBackend"] == f"{BASE}/t/s3cret"
    assert c.post("/t/wrong/knn-service", content=body, headers={"Origin": FRONT}).status_code == 401
    assert c.post("/knn-service", content=body, headers={"Origin": FRONT}).status_code == 401  # no token at all
    other = c.post("/t/s3cret/knn-service", content=body, headers={"Origin": "http://127.0.0.1:9999"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    # Other origins' pages still cannot search xmr's own API.
    assert c.get("/t/s3cret/api/search?q=x", headers={"Origin": "http://127.0.0.1:9999"}).status_code == 403


@pytest.fixture(scope="module")
def served(trained_library, tmp_path_factory):
    """A live `xmr serve --cors ORIGIN --token` and, on ORIGIN, clip-front's built page (a copy of
    the wheel's front/build folder, served by a plain static server)."""
    site = tmp_path_factory.mktemp("front") / "build"
    shutil.copytree(clip_retrieval_file("front/build/index.html").parent, site)
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(site), **kw)  # noqa: E731
    front = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{front.server_address[1]}"
    try:
        with live_server(trained_library.path, "--cors", origin, "--token", "tok3n") as (_, info):
            yield {"origin": origin, "site": site, "url": info["url"], "back": info["url"] + "/t/tok3n"}
    finally:
        front.shutdown()


def test_the_real_clip_client_finds_the_right_items(served, trained_library, samples):
    module = clip_client_class()
    folder, notes, pictures = caption_notes_and_pictures(samples)
    back = served["back"]  # the token in the address, as clip-front uses it too
    name = json.loads(module.requests.get(back + "/indices-list", timeout=30).text)[0]
    assert module.requests.get(served["url"] + "/indices-list", timeout=30).status_code == 401  # no token
    images = module.ClipClient(url=back + "/knn-service", indice_name=name, num_images=3)
    texts = module.ClipClient(url=back + "/knn-service", indice_name=name, num_images=3, modality=module.Modality.TEXT)
    right = 0
    for c in CONCEPTS:
        label = f"{c.color} {c.shape}"
        rows = images.query(text=f"a photo of a {label}")
        assert len(rows) == 3 and all(r["modality"] == "image" for r in rows)
        right += concept_of(rows[0]["path"], samples) == label
    assert right / len(CONCEPTS) >= 0.85, right
    # A picture file (ClipClient sends its bytes in base64) finds its caption note.
    found = 0
    for rel, label in notes.items():
        rows = texts.query(image=str(folder / pictures[label]))
        found += concept_of(rows[0]["path"], samples) == label
    assert found / len(notes) >= 0.8, (found, len(notes))
    # An embedding: a picture's own stored vector finds that picture first.
    target = images.query(text="a photo of a yellow circle")[0]
    vector = trained_library.item_vector(target["id"])
    rows = images.query(embedding_input=[float(x) for x in vector])
    assert rows[0]["id"] == target["id"] and abs(rows[0]["similarity"] - 1.0) < 1e-4
    assert np.isclose(np.linalg.norm(vector), 1.0)


def test_clip_front_from_another_origin_shows_xmr_results(served, trained_library, samples):
    import requests
    from playwright.sync_api import expect, sync_playwright

    from tests.test_browser import CHROMIUM_FLAGS, chromium_path

    executable = chromium_path()
    # clip-front reads its back end from its own config.json: xmr's, as `/config.json` gives it.
    config = requests.get(served["back"] + "/config.json", timeout=30).json()
    assert config["defaultBackend"] == served["back"]
    (served["site"] / "config.json").write_text(json.dumps(config))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{served['origin']}/index.html?query=a%20photo%20of%20a%20blue%20square")
        pics = page.locator("clip-front img.pic")
        expect(pics.first).to_be_visible(timeout=60_000)
        assert pics.count() >= 2
        # Each picture loads from xmr (another origin) or fails; lazy ones below the fold wait.
        page.wait_for_function("""() => [...document.querySelector('clip-front').shadowRoot
            .querySelectorAll('img.pic')].slice(0, 2).every(i => i.complete)""")
        shown = page.evaluate("""() => [...document.querySelector('clip-front').shadowRoot
            .querySelectorAll('img.pic')].filter(i => i.complete).map(i => [i.src, i.naturalWidth, i.alt])""")
        browser.close()
    assert len(shown) >= 2 and all(src.startswith(served["back"] + "/api/items/") and width > 0
                                   for src, width, _ in shown), shown
    first = int(shown[0][0].split("/api/items/")[1].split("/")[0])
    assert concept_of(trained_library.item(first)["path"], samples) == "blue square", shown[0]
    assert not errors, errors
