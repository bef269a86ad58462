"""The web page in a real browser: Debian's Chromium, headless, driven by Playwright.

`.ci/run` installs chromium and sets XMR_REQUIRE_BROWSER=1, so in CI a missing browser fails
this test instead of skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import pytest

from retrieval import Library
from tests.conftest import live_server

CHROMIUM_FLAGS = [
    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
XSS_NAME = "<img src=x onerror=window.__xss=1>.txt"


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("XMR_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed, and XMR_REQUIRE_BROWSER says this run must test the page")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    return path


def settled(page) -> None:
    """Wait until the latest search has answered and drawn (the page marks #results aria-busy)."""
    from playwright.sync_api import expect

    expect(page.locator("#results")).to_have_attribute("aria-busy", "false")


# Mean absolute difference (0-255) between the frame a page's video shows and a picture, both
# drawn at 32x18.
FRAME_VS_POSTER = """async (url) => {
    const video = document.querySelector('.result.video video');
    const canvas = document.createElement('canvas');
    canvas.width = 32; canvas.height = 18;
    const g = canvas.getContext('2d');
    g.drawImage(video, 0, 0, 32, 18);
    const shown = g.getImageData(0, 0, 32, 18).data;
    const img = new Image();
    img.src = url;
    await img.decode();
    g.drawImage(img, 0, 0, 32, 18);
    const poster = g.getImageData(0, 0, 32, 18).data;
    let d = 0;
    for (let i = 0; i < shown.length; i += 4) d += Math.abs(shown[i] - poster[i]) + Math.abs(shown[i + 1] - poster[i + 1]) + Math.abs(shown[i + 2] - poster[i + 2]);
    return d / (shown.length / 4 * 3);
}"""


def drop_file(page, path: Path, name: str, mime: str) -> None:
    """Drop the file at `path` on the page (as `name`), as a user drags it from a file manager."""
    import base64

    page.evaluate(
        """([b64, name, mime]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], name, {type: mime}));
            window.dispatchEvent(new DragEvent("dragenter", {dataTransfer: data}));
            window.dispatchEvent(new DragEvent("drop", {dataTransfer: data}));
        }""",
        [base64.b64encode(path.read_bytes()).decode(), name, mime],
    )


@pytest.fixture()
def browser():
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


def test_search_upload_and_more_like_this_in_chromium(tmp_path, browser, trained_model, samples):
    from playwright.sync_api import expect

    folder, manifest = samples
    media = tmp_path / "media"
    shutil.copytree(folder, media)
    (media / "notes" / XSS_NAME).write_text("<script>window.__xss=2</script> a drawing of a green triangle")
    lib = Library(tmp_path / "lib", model=trained_model, create=True)
    lib.index([media])

    def concept(path: str) -> str:
        return manifest[str(Path(path).relative_to(media))]

    with live_server(lib.path) as (_, info):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        page.goto(info["url"] + "/")
        expect(page.locator("#library")).to_contain_text(f"{lib.stats()['items']} items")

        # Type a query, pick the Pictures tab: the right thumbnails come first.
        page.fill("#q", "a photo of a red circle")
        page.press("#q", "Enter")
        settled(page)
        expect(page.locator(".result").first).to_be_visible()
        page.click("#tabs button[data-type=image]")
        settled(page)
        expect(page.locator("#tabs button[data-type=image]")).to_have_attribute("aria-selected", "true")
        expect(page.locator(".result.text")).to_have_count(0)
        cards = page.locator(".result.image")
        expect(cards.first).to_be_visible()
        top = [cards.nth(i).get_attribute("title").split("\n")[0] for i in range(2)]
        assert [concept(p) for p in top] == ["red circle", "red circle"], top
        thumb = cards.first.locator("img.thumb")
        expect(thumb).to_have_attribute("src", f"/api/items/{cards.first.get_attribute('data-item-id')}/thumbnail")
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
        assert "#q=a+photo+of+a+red+circle&type=image" in page.url  # the query survives a reload

        # The score shows on hover.
        score = cards.first.locator(".score")
        expect(score).to_have_css("opacity", "0")
        cards.first.hover()
        expect(score).to_have_css("opacity", "1")
        expect(score).to_contain_text(re.compile(r"score -?\d+\.\d{3} · cos 0\.\d{3}"))
        page.screenshot(path=str(tmp_path / "search.png"))

        # Upload a picture (file picker) and look for text: its caption note comes first.
        notes = {label: rel for rel, label in manifest.items() if rel.startswith("notes/note-")}
        picture_rel = next(rel for rel, label in manifest.items() if rel.startswith("photos/") and label in notes)
        label = manifest[picture_rel]
        page.fill("#q", "")
        page.click("#tabs button[data-type=text]")
        page.set_input_files("#file", str(media / picture_rel))
        settled(page)
        expect(page.locator("[data-testid=chip]")).to_contain_text(Path(picture_rel).name)
        expect(page.locator(".result.image")).to_have_count(0)
        page.wait_for_function("() => document.querySelector('#status').textContent.includes('result')")
        titles = page.eval_on_selector_all(".result.text", "cards => cards.map(c => c.title.split('\\n')[0])")
        first_note = next(t for t in titles if "/notes/note-" in t)  # the journal mentions every shape
        assert first_note.endswith(notes[label]), (titles, notes[label])
        page.screenshot(path=str(tmp_path / "upload.png"))
        page.click("[data-testid=chip] button")
        expect(page.locator("[data-testid=chip]")).to_have_count(0)

        # Click a result: more like this, from other files.
        page.click("#tabs button[data-type=image]")
        page.fill("#q", "a photo of a yellow star")
        page.press("#q", "Enter")
        settled(page)
        clicked = page.locator(".result.image").first
        clicked_path = clicked.get_attribute("title").split("\n")[0]
        clicked.click()
        settled(page)
        expect(page.locator("#like")).to_be_visible()
        expect(page.locator("#like-name")).to_have_text(Path(clicked_path).name)
        page.wait_for_function("() => document.querySelector('#status').textContent.includes('result')")
        similar = [page.locator(".result").nth(i).get_attribute("title").split("\n")[0] for i in range(3)]
        assert clicked_path not in similar
        assert concept(similar[0]) == concept(clicked_path)

        # File names and text are shown as text, never run as HTML.
        page.click("#like-clear")
        page.click("#tabs button[data-type=text]")
        page.fill("#q", "a drawing of a green triangle")
        page.press("#q", "Enter")
        expect(page.locator(".result.text .name", has_text="<img src=x onerror")).to_have_count(1)
        expect(page.locator(".result.text .snippet", has_text="<script>window.__xss=2</script>")).to_have_count(1)
        assert page.evaluate("window.__xss") is None

        # An upload that is not a picture: the page says what went wrong.
        fake = tmp_path / "fake.png"
        fake.write_text("this is not a picture")
        page.set_input_files("#file", str(fake))
        expect(page.locator("#status.error")).to_contain_text("image 'fake.png'")
        expect(page.locator("#more")).to_be_hidden()
        expect(page.locator(".result")).to_have_count(0)
        page.screenshot(path=str(tmp_path / "error.png"))
        assert not [p for p in problems if "request failed" not in p], problems
        for shot in ("search.png", "upload.png", "error.png"):
            assert (tmp_path / shot).stat().st_size > 10_000


def test_an_empty_library_says_what_to_do(tmp_path, browser, trained_model):
    from playwright.sync_api import expect

    Library(tmp_path / "lib", model=trained_model, create=True)
    with live_server(tmp_path / "lib") as (proc, info):
        page = browser.new_page()
        page.goto(info["url"] + "/")
        empty = page.locator("[data-testid=empty]")
        expect(empty).to_contain_text("This library is empty")
        expect(empty).to_contain_text("xmr index")
        page.fill("#q", "anything at all")
        page.press("#q", "Enter")
        settled(page)
        expect(empty).to_contain_text("This library is empty")
        expect(page.locator("#more")).to_be_hidden()
        assert empty.bounding_box()["width"] > 300  # spans the page, not one grid cell
        page.screenshot(path=str(tmp_path / "empty.png"))
        # The server goes away: the page says so and what to check.
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        page.fill("#q", "anything else")
        page.press("#q", "Enter")
        expect(page.locator("#status.error")).to_contain_text("Cannot reach the xmr server")


def test_the_footer_follows_the_servers_watcher(tmp_path, browser, random_model):
    """`xmr serve --watch`: the footer says the library is watched, and a picture saved into a
    watched folder shows in its counts and its last change without a reload."""
    import random

    from playwright.sync_api import expect

    from scripts.synthetic import CONCEPTS, draw

    media = tmp_path / "media"
    media.mkdir()
    draw(CONCEPTS[0], random.Random(0)).save(media / "first.png")
    Library(tmp_path / "lib", model=random_model, create=True).index([media])
    with live_server(tmp_path / "lib", "--watch") as (_, info):
        page = browser.new_page()
        page.goto(info["url"] + "/")
        expect(page.locator("#watch")).to_contain_text("watching", timeout=60_000)
        expect(page.locator("#library")).to_contain_text("1 item (")
        draw(CONCEPTS[1], random.Random(1)).save(media / "second.png")
        expect(page.locator("#library")).to_contain_text("2 items", timeout=30_000)
        expect(page.locator("#watch")).to_contain_text("last change")
        page.screenshot(path=str(tmp_path / "watched.png"))


def test_sounds_play_from_their_window_and_can_be_dropped_on_the_page(tmp_path, browser, random_model, tiny_clap):
    from playwright.sync_api import expect

    from scripts.synthetic_audio import synth, write_sound

    media = tmp_path / "media"
    media.mkdir()
    write_sound(media / "long.wav", synth("chirp", 25.0, 16000, 300.0, seed=1), 16000)
    write_sound(media / "tone.wav", synth("tone", 3.0, 16000, 440.0, seed=2), 16000)
    lib = Library(tmp_path / "lib", model=random_model, audio_model=tiny_clap, create=True)
    lib.index([media])

    with live_server(lib.path) as (_, info):
        page = browser.new_page()
        page.goto(info["url"] + "/#type=audio")
        expect(page.locator("#tabs button[data-type=audio]")).to_have_attribute("aria-selected", "true")
        # Drop a sound file on the page, as a user drags it from their file manager.
        drop_file(page, media / "tone.wav", "tone.wav", "audio/wav")
        expect(page.locator("[data-testid=chip]")).to_contain_text("tone.wav")
        settled(page)
        expect(page.locator("#drop")).to_be_hidden()
        cards = page.locator(".result.audio")
        expect(cards.first).to_be_visible()
        assert cards.first.get_attribute("title").split("\n")[0].endswith("tone.wav")
        assert float(cards.first.get_attribute("data-score")) == pytest.approx(1.0, abs=1e-3)
        # Every window of the long sound is a hit whose player starts at that window.
        windows = page.eval_on_selector_all(
            ".result.audio audio", "players => players.map(p => p.getAttribute('src'))")
        starts = {w.split("#t=")[1] for w in windows if "#t=" in w}
        assert {"0,10", "10,20", "15,25", "0,3"} <= starts, windows
        player = page.locator(".result.audio audio[src$='#t=10,20']")
        expect(player).to_have_count(1)
        page.wait_for_function("p => p.readyState >= 1 && p.currentTime >= 9.9", arg=player.element_handle())
        card = page.locator(".result.audio", has=page.locator("audio[src$='#t=10,20']"))
        expect(card.locator(".when")).to_have_text("0:10.0 – 0:20.0")
        page.screenshot(path=str(tmp_path / "sounds.png"))


EVIL_PAGE = """<!doctype html><html><body><p id="log">working</p><script>
const X = "%(xmr)s";
const form = new FormData();
form.append("q", "evil-upload");
form.append("image", new Blob([new Uint8Array(%(png)s)], {type: "image/png"}), "x.png");
const tries = [
  fetch(X + "/api/search/upload", {method: "POST", mode: "no-cors", body: form}),
  fetch(X + "/api/search?q=evil-get", {mode: "no-cors"}),
  fetch(X + "/api/search", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
                            body: JSON.stringify({q: ["evil-json"]})}),
  new Promise((done) => { const img = new Image(); img.onload = img.onerror = done; img.src = X + "/api/search?q=evil-img"; }),
];
Promise.allSettled(tries).then(() => { document.getElementById("log").textContent = "sent"; });
</script>
<form id="f" method="post" action="%(xmr)s/api/search/upload" enctype="multipart/form-data">
<input name="q" value="evil-form"></form></body></html>"""


def test_a_page_of_another_origin_cannot_use_the_api(tmp_path, browser, random_model):
    """A web page on another origin (here another port of 127.0.0.1) makes the browser send
    searches and an upload to `xmr serve`: every one is refused (403), none runs."""
    import http.server
    import io
    import threading

    from PIL import Image
    from playwright.sync_api import expect

    media = tmp_path / "media"
    media.mkdir()
    (media / "note.txt").write_text("a note", encoding="utf-8")
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([media])
    picture = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(picture, "PNG")
    site = tmp_path / "evil"
    site.mkdir()
    with live_server(lib.path, "-v") as (proc, info):
        (site / "index.html").write_text(EVIL_PAGE % {"xmr": info["url"].rstrip("/"), "png": list(picture.getvalue())})
        handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(site), **kw)  # noqa: E731
        evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/index.html")
            expect(page.locator("#log")).to_have_text("sent")
            with page.expect_navigation():
                page.evaluate("document.getElementById('f').submit()")  # a plain form post, too
            # The server's own page still works from its own origin.
            page.goto(info["url"] + "/")
            page.fill("#q", "a note")
            page.press("#q", "Enter")
            settled(page)
            expect(page.locator(".result")).to_have_count(1, timeout=30_000)  # a busy machine
        finally:
            evil.shutdown()
    log = proc.stdout.read()  # uvicorn's access log
    answers = [line for line in log.splitlines() if '"' in line and "/api/search" in line]
    refused = [line for line in answers if " 403" in line]
    assert len(refused) >= 5, log  # the upload, GET, JSON POST, <img> and form post
    assert [line for line in answers if " 403" not in line] == [line for line in answers if "q=a+note" in line], log


def test_videos_show_a_poster_play_from_the_moment_and_mark_their_timeline(tmp_path, browser, random_model, tiny_clap):
    from playwright.sync_api import expect

    from scripts.synthetic import Concept
    from scripts.synthetic_video import Scene, make_video

    media = tmp_path / "media"
    media.mkdir()
    # Cuts at 4.083 s and 7.917 s: times no float holds exactly, as most cuts are.
    make_video(media / "clip.mp4", [Scene(Concept("red", "circle"), 4.1, 300.0), Scene(Concept("blue", "square"), 3.8, 900.0),
                                    Scene(Concept("green", "star"), 4.1, 1500.0)])
    lib = Library(tmp_path / "lib", model=random_model, audio_model=tiny_clap, create=True)
    lib.index([media])
    items = lib.stats()["items_by_modality"]["video"]

    with live_server(lib.path) as (_, info):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(info["url"] + "/#type=video")
        page.fill("#q", "a red circle")
        page.press("#q", "Enter")
        settled(page)
        cards = page.locator(".result.video")
        expect(cards).to_have_count(1)  # one card per video: its other moments are marks on its timeline
        marks = cards.first.locator(".timeline .mark")
        expect(marks).to_have_count(items)
        expect(cards.first.locator(".timeline .mark.heard")).not_to_have_count(0)  # its sound track matched too
        video = cards.first.locator("video")
        src, poster = video.get_attribute("src"), video.get_attribute("poster")
        assert "#t=" in src and poster.endswith("/thumbnail")
        start = float(src.split("#t=")[1].split(",")[0])
        thumb = page.request.get(info["url"] + poster)
        assert thumb.status == 200 and thumb.headers["content-type"] == "image/jpeg"
        partial = page.request.get(info["url"] + src.split("#")[0], headers={"Range": "bytes=0-99"})
        assert partial.status == 206 and len(partial.body()) == 100
        # The player starts at the matched moment; a mark moves it to its own.
        page.wait_for_function(f"() => {{ const v = document.querySelector('.result.video video'); "
                               f"return v.readyState >= 1 && v.currentTime >= {start} - 0.05; }}")
        # A shot's mark plays from that shot's first frame: the picture shown is the shot's, not
        # the last frame before its cut (compared with the shot's own poster, a middle frame).
        shots = cards.first.locator(".timeline .mark:not(.heard)")
        for i in range(shots.count()):
            mark = shots.nth(i)
            target, item = float(mark.get_attribute("data-start")), mark.get_attribute("data-item-id")
            mark.click()
            page.wait_for_function(f"() => {{ const v = document.querySelector('.result.video video'); "
                                   f"return !v.seeking && v.readyState >= 2 && Math.abs(v.currentTime - {target}) < 0.1; }}")
            page.evaluate("() => document.querySelector('.result.video video').pause()")
            assert page.evaluate(FRAME_VS_POSTER, f"/api/items/{item}/thumbnail") < 12, (i, target)
        page.screenshot(path=str(tmp_path / "videos.png"))
        if os.environ.get("XMR_SCREENSHOTS"):
            page.screenshot(path=os.path.join(os.environ["XMR_SCREENSHOTS"], "videos.png"))

        # A video dropped on the page is the query: the same video comes first.
        drop_file(page, media / "clip.mp4", "query.mp4", "video/mp4")
        expect(page.locator("[data-testid=chip]")).to_contain_text("query.mp4")
        settled(page)
        expect(page.locator(".result.video")).to_have_count(1)
        assert not problems, problems


def test_filters_in_the_address_infinite_scroll_tags_and_duplicates(tmp_path, browser, trained_model):
    """Filters narrow the page's results and live in its address (reload, back and forward keep
    them); scrolling to the end loads the next page; tags show on results; the Duplicates view
    shows the planted copies with their keepers."""
    from playwright.sync_api import expect

    from scripts.photo_world import make_world

    media = tmp_path / "media"
    manifest = make_world(media, seed=2)
    lib = Library(tmp_path / "lib", model=trained_model, create=True)
    lib.index([media])
    from collections import Counter

    concept = Counter(p["concept"] for p in manifest["pictures"].values() if p["taken"].startswith("2021")).most_common(1)[0][0]
    lib.tag([concept, "blue star"], prompt="a {}")
    total = len(manifest["pictures"]) + len(manifest["copies"])
    with live_server(lib.path) as (_, info):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(info["url"] + "/#q=" + f"a {concept}".replace(" ", "+") + "&mode=semantic")
        settled(page)
        expect(page.locator(".result").nth(29)).to_be_visible()  # the first page
        page.mouse.wheel(0, 20_000)
        page.wait_for_function("() => document.querySelectorAll('.result').length >= 60")  # scrolled on: the next page came
        settled(page)
        expect(page.locator(".result [data-testid=tags]").first).to_contain_text(concept)
        expect(page.locator(".result [data-testid=facts]").first).to_contain_text("20")  # a date

        # A filter: only 2021's pictures, and the address says so.
        page.click("#filters summary")
        page.fill("#f-after", "2021-01-01")
        page.fill("#f-before", "2022-01-01")
        page.dispatch_event("#f-before", "change")
        settled(page)
        in_2021 = sum(1 for p in manifest["pictures"].values() if p["taken"].startswith("2021"))
        page.wait_for_function("() => location.hash.includes('before=2022-01-01')")
        page.mouse.wheel(0, 20_000)  # all of them, page after page
        page.wait_for_function(f"() => document.querySelectorAll('.result').length === {in_2021}")
        facts = page.locator(".result [data-testid=facts]").all_text_contents()
        assert facts and all(f.startswith("2021-") for f in facts), facts
        page.check("#f-cutoff")
        settled(page)
        page.wait_for_function("() => location.hash.includes('cutoff=auto')")
        red_2021 = sum(1 for p in manifest["pictures"].values() if p["taken"].startswith("2021") and p["concept"] == concept)
        expect(page.locator(".result")).to_have_count(red_2021)

        # Back: the filter without the cutoff; reload keeps the address's state.
        page.go_back()
        settled(page)
        expect(page.locator("#f-cutoff")).not_to_be_checked()
        expect(page.locator(".result").first).to_be_visible()
        assert page.locator(".result").count() > red_2021
        page.reload()
        settled(page)
        expect(page.locator("#f-after")).to_have_value("2021-01-01")
        expect(page.locator(".result").first).to_be_visible()
        assert all(f.startswith("2021-") for f in page.locator(".result [data-testid=facts]").all_text_contents())

        # The Duplicates view.
        page.click("#dupes-link")
        expect(page.locator("[data-testid=dupe-group]")).to_have_count(len(manifest["copies"]))
        expect(page.locator("[data-testid=dupe-group] figure.keeper img")).to_have_count(len(manifest["copies"]))
        page.screenshot(path=str(tmp_path / "dupes.png"))
        page.go_back()
        settled(page)
        expect(page.locator("#dupes")).to_be_hidden()
        assert total > 60 and not problems, problems

        # A window taller than two pages of results: pages come until it is filled, with no
        # scroll (the list's end stays in view across answers; its observer alone stopped at 60).
        tall = browser.new_page(viewport={"width": 1280, "height": 4400})
        tall.goto(info["url"] + "/#q=" + f"a {concept}".replace(" ", "+") + "&mode=semantic")
        tall.wait_for_function("() => document.querySelectorAll('.result').length >= 90")
        settled(tall)
        end = tall.evaluate("() => document.querySelector('#more').getBoundingClientRect().top - innerHeight")
        assert end > 0 and tall.locator(".result").count() < total  # then it stops

        # Filters typed in the box (the query language) become chips; a chip's ✕ takes its
        # filter out of the box and searches again; the order shown follows `score`.
        # The library's facts are held back until a chip has been taken out: what the user did while
        # the page was still loading is not undone by the address once they come.
        typed = browser.new_page(viewport={"width": 1280, "height": 900})
        held = []
        typed.route("**/api/health", lambda route: held.append(route))
        typed.goto(info["url"] + "/")
        typed.fill("#q", f"a {concept} type:image after:2021-01-01 before:2022-01-01")
        typed.press("#q", "Enter")
        settled(typed)
        chips = typed.locator("[data-testid=filter-chip]")
        expect(chips).to_have_count(3)
        assert len(held) == 1
        expect(chips.nth(1)).to_contain_text("after: 2021-01-01")
        facts = typed.locator(".result [data-testid=facts]").all_text_contents()
        assert facts and all(f.startswith("2021-") for f in facts), facts
        scores = [float(x) for x in typed.locator(".result").evaluate_all("ns => ns.map(n => n.dataset.score)")]
        assert scores == sorted(scores, reverse=True), scores
        chips.nth(1).locator("button").click()
        held[0].continue_()
        expect(typed.locator("#library")).to_contain_text("items")
        settled(typed)
        expect(chips).to_have_count(2)
        assert "after:" not in typed.input_value("#q") and "before:2022-01-01" in typed.input_value("#q")
        typed.wait_for_function("() => [...document.querySelectorAll('[data-testid=facts]')]"
                                ".some(n => !n.textContent.startsWith('2021-'))")
        assert not problems, problems


def test_people_view_rename_in_place_person_filter_and_face_boxes(tmp_path, browser, random_model, face_photos):
    """The People view shows each person's face and count; a name is given in place; a face
    opens their pictures; the Person filter keeps a search to them; pictures show their faces'
    boxes and names."""
    from playwright.sync_api import expect

    media = tmp_path / "media"
    media.mkdir()
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        shutil.copy(face_photos / name, media / name)
    Library(tmp_path / "lib", model=random_model, create=True).index([media])
    with live_server(tmp_path / "lib") as (_, info):
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(info["url"] + "/")
        page.click("#people-link")
        people = page.locator("[data-testid=person]")
        expect(people).to_have_count(2)
        expect(people.first).to_contain_text("3 ×")  # the most seen first
        expect(people.first.locator("img.face")).to_have_js_property("complete", True)
        assert people.first.locator("img.face").evaluate("img => img.naturalWidth") == 96
        people.first.locator("[data-testid=person-name]").click()
        page.fill("[data-testid=rename]", "Barack")
        page.press("[data-testid=rename]", "Enter")
        expect(people.first.locator("[data-testid=person-name]")).to_have_text("Barack")
        page.reload()  # kept by the server, not the page
        expect(page.locator("[data-testid=person]").first.locator("[data-testid=person-name]")).to_have_text("Barack")
        # A face: their pictures, each with its face's box and their name.
        page.locator("[data-testid=person]").first.locator("img.face").click()
        settled(page)
        expect(page.locator("#person-bar")).to_contain_text("Barack")
        results = page.locator(".result")
        expect(results).to_have_count(3)
        expect(results.locator("[data-testid=face-box]")).to_have_count(3)
        expect(results.first.locator("[data-testid=people]")).to_have_text("Barack")
        # The Person filter keeps a search to them; taking it off brings the others back.
        page.click("#person-clear")
        page.fill("#q", "a man")
        page.press("#q", "Enter")
        settled(page)
        expect(results).to_have_count(4)
        page.click("#filters summary")
        page.select_option("#f-person", label="Barack (3)")
        settled(page)
        expect(results).to_have_count(3)
        assert "person=" in page.url
        page.reload()  # the address keeps the search with its person
        settled(page)
        expect(results).to_have_count(3)
        expect(page.locator("#f-person")).to_have_value(re.compile(r"\d+"))
        names = results.locator("[data-testid=people]").all_inner_texts()
        assert names == ["Barack"] * 3, names
        # Typed in the box, the person is a filter chip like the others.
        page.select_option("#f-person", value="")
        page.fill("#q", "person:barack a man")
        page.press("#q", "Enter")
        settled(page)
        expect(page.locator("[data-testid=filter-chip]")).to_have_text(re.compile("person: barack"))
        expect(results).to_have_count(3)
        page.screenshot(path=str(tmp_path / "people.png"))
        assert errors == []
