"""The media-kind contract: recognition, and a toy kind that xmr indexes, searches, checks and
serves without any change to scan, pipeline, catalog, search or the page."""

from __future__ import annotations

import json
import random
import sys

import pytest

from indexer.kinds import all_kinds, get_kind, is_candidate, kind_names, sniff_kind, unregister_kind
from scripts.synthetic import CONCEPTS, draw
from tests.conftest import ROOT


def test_built_in_kinds_and_their_order():
    assert kind_names() == ("image", "text", "audio", "video", "document")  # the page's tab order
    assert [k.label for k in all_kinds()] == ["Pictures", "Text", "Sounds", "Videos", "Documents"]
    assert get_kind("text").location == ("chunk", "snippet", "char_start", "char_end")
    assert get_kind("image").has_thumbnail and not get_kind("audio").has_thumbnail
    assert is_candidate("a.JPG") and is_candidate("notes.md") and is_candidate("x.flac") and is_candidate("README")
    assert not is_candidate("movie.xyz")


def test_content_decides_before_the_name(tmp_path):
    png = tmp_path / "looks-like.txt"
    draw(CONCEPTS[0], random.Random(0)).save(png, format="PNG")
    note = tmp_path / "really-a-note.jpg"
    note.write_text("a red circle", encoding="utf-8")
    wav = tmp_path / "sound.txt"
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    (tmp_path / "plain.md").write_text("hello", encoding="utf-8")
    (tmp_path / "other.bin").write_bytes(b"\x00\x01")
    assert sniff_kind(str(png)).name == "image"
    assert sniff_kind(str(note)).name == "image"  # named a picture: decoding will say it is not one
    assert sniff_kind(str(wav)).name == "audio"
    assert sniff_kind(str(tmp_path / "plain.md")).name == "text"
    assert sniff_kind(str(tmp_path / "other.bin")) is None


def test_a_kind_cannot_claim_another_kinds_extensions():
    from indexer.kinds import register_kind
    from tests.toy_kind import TableKind

    class Greedy(TableKind):
        name = "greedy"
        extensions = frozenset({".png"})

    with pytest.raises(ValueError, match="image"):
        register_kind(Greedy())
    assert "greedy" not in kind_names()


@pytest.fixture()
def table_kind():
    from tests.toy_kind import register

    kind = register()
    yield kind
    unregister_kind(kind.name)


ROWS = ["red,circle", "blue,square", "green,star", "yellow,triangle", "purple,circle", "orange,square"]


def _table_folder(base):
    media = base / "media"
    media.mkdir()
    (media / "shapes.csv").write_text("#table\n" + "\n".join(ROWS) + "\n", encoding="utf-8")
    (media / "more-shapes").write_text("#table\nblue,star\n", encoding="utf-8")  # no extension: content says table
    draw(CONCEPTS[0], random.Random(0)).save(media / "picture.png")
    (media / "note.txt").write_text("a note about a green square", encoding="utf-8")
    return media


def test_a_toy_kind_is_indexed_searched_and_checked(tmp_path, trained_model, table_kind):
    from retrieval import Library

    media = _table_folder(tmp_path)
    lib = Library(tmp_path / "lib", model=trained_model, create=True)
    report = lib.index([media])
    assert (report.new, report.skipped) == (4, 0)
    assert lib.stats()["items_by_modality"] == {"image": 1, "text": 1, "table": len(ROWS) + 1}
    text = (media / "shapes.csv").read_text(encoding="utf-8")
    for row, cells in enumerate(ROWS):
        hits = lib.search(f"a photo of a {cells.replace(',', ' ')}", k=3, type="table")
        assert len(hits) == 3 and all(h.modality == "table" for h in hits)
        best = hits[0]
        assert best.snippet == cells and best.path.endswith("shapes.csv")
        assert (best.chunk, text[best.char_start : best.char_end]) == (row, cells)  # located at its row
        assert best.start is None and best.end is None  # only the fields the kind names
    # A picture finds the row of its concept (the text encoder embedded the rows).
    rows = lib.search(__import__("retrieval").Query(images=[str(media / "picture.png")]), k=1, type="table")
    assert rows[0].snippet == "red,circle"
    # Mixed with the other kinds by the same calibration.
    mixed = lib.search("a red circle", k=10)
    assert {h.modality for h in mixed} >= {"table", "image"} and all(h.calibrated is not None for h in mixed)
    assert lib.check().ok
    # Incremental like every kind: unchanged, then a changed table replaces its rows.
    assert lib.index([media]).unchanged == 4
    (media / "shapes.csv").write_text("#table\nred,circle\n", encoding="utf-8")
    again = lib.index([media])
    assert again.updated == 1 and lib.stats()["items_by_modality"]["table"] == 2
    assert lib.check().ok


def test_a_toy_kind_reaches_the_cli_and_the_server(tmp_path, trained_model, table_kind):
    import subprocess

    from fastapi.testclient import TestClient

    from retrieval.server.app import create_app
    from retrieval.server.state import LibraryState

    media = _table_folder(tmp_path)
    lib_dir = tmp_path / "lib"
    # The real CLI, in a process that registers the kind first (as a plugin would).
    boot = "import sys; from tests.toy_kind import register; register(); from retrieval.cli import main; sys.argv[0] = 'xmr'; main()"

    def xmr(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", boot, "--library", str(lib_dir), *args], capture_output=True,
                              text=True, cwd=ROOT, timeout=300)

    done = xmr("index", str(media), "--model", trained_model, "--no-progress")
    assert done.returncode == 0, done.stderr
    found = xmr("search", "a photo of a yellow triangle", "--type", "table", "-k", "1", "--json", "--no-server")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["snippet"] == "yellow,triangle"
    assert "--type" in xmr("search", "--help").stdout and "table" in xmr("search", "--help").stdout
    assert xmr("check").stdout.strip() == "ok"

    client = TestClient(create_app(LibraryState(lib_dir, fast_queries=False)), base_url="http://127.0.0.1:8765")
    kinds = client.get("/api/health").json()["kinds"]
    assert {"name": "table", "label": "Tables", "noun": "row", "view": "snippet", "thumbnail": False,
            "extensions": [".csv"]} in kinds
    hit = client.get("/api/search", params={"q": "a photo of a green star", "type": "table", "k": 1}).json()["hits"][0]
    assert hit["snippet"] == "green,star"
    media_answer = client.get(f"/api/items/{hit['item_id']}/media")
    assert media_answer.status_code == 200 and media_answer.headers["content-type"].startswith("text/plain")
    assert client.get(f"/api/items/{hit['item_id']}/thumbnail").status_code == 404
    assert "thumbnail_url" not in client.get(f"/api/items/{hit['item_id']}").json()
