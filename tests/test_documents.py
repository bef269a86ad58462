"""PDFs made here (scripts/synthetic_pdf.py): their text layer indexed page by page, found by
meaning with the model trained in this session, hits saying their page."""

from __future__ import annotations

import json

import pytest

from retrieval import Library
from scripts.synthetic_pdf import text_pdf
from tests.conftest import run_xmr


@pytest.fixture(scope="module")
def pdf_lib(tmp_path_factory, trained_model):
    media = tmp_path_factory.mktemp("pdfs")
    text_pdf(media / "shapes.pdf", [["a blue square"], ["a green star"], ["a red circle"], ["a yellow triangle"]])
    (media / "note.txt").write_text("a purple star", encoding="utf-8")
    lib = Library(tmp_path_factory.mktemp("pdf-lib"), model=trained_model, create=True)
    report = lib.index([media])
    assert report.skipped == 0 and report.new == 2
    return lib, media


def test_a_pdf_is_found_by_what_page_three_says(pdf_lib):
    lib, _ = pdf_lib
    best = lib.search("a red circle", k=3, type="document")[0]
    assert best.modality == "document" and best.page == 3 and best.snippet == "a red circle"
    assert (best.char_start, best.char_end) == (0, len("a red circle"))  # offsets within its page
    pages = [h.page for h in lib.search("a yellow triangle", k=4, type="document")]
    assert pages[0] == 4 and sorted(pages) == [1, 2, 3, 4]


def test_cli_json_grouped_stats_and_check(pdf_lib):
    lib, media = pdf_lib
    base = ["--library", str(lib.path)]
    hits = json.loads(run_xmr(*base, "search", "a green star", "--type", "document", "--json", "--no-server", check=True).stdout)
    assert hits[0]["page"] == 2 and hits[0]["path"] == str(media / "shapes.pdf")
    table = run_xmr(*base, "search", "a green star", "--group", "--no-server", check=True).stdout
    assert "[page 2]" in table and "also page" in table and table.count("shapes.pdf") == 1
    stats = json.loads(run_xmr(*base, "stats", "--json", check=True).stdout)
    assert stats["files_by_modality"] == {"document": 1, "text": 1} and stats["items_by_modality"]["document"] == 4
    assert stats["documents_by_type"] == {"pdf": 1}
    assert "documents  pdf: 1" in run_xmr(*base, "stats", check=True).stdout
    assert run_xmr(*base, "check", check=True).stdout.strip() == "ok"


def test_a_long_page_is_chunked_within_its_page(tmp_path, random_model):
    words = " ".join(f"word{i}" for i in range(400))
    text_pdf(tmp_path / "media.pdf", [["short first page"], [words[i : i + 90] for i in range(0, len(words), 90)]])
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([tmp_path / "media.pdf"])
    from sqlalchemy import select

    from indexer.catalog import Item

    with lib.Session() as s:
        rows = s.execute(select(Item.page, Item.chunk, Item.char_start).order_by(Item.chunk)).all()
    assert rows[0] == (1, 0, 0) and len(rows) > 3
    assert {p for p, _, _ in rows[1:]} == {2} and rows[1][2] == 0  # a new page starts its own offsets


def test_word_html_and_epub_documents(tmp_path, random_model):
    import docx

    from scripts.synthetic_epub import write_epub

    document = docx.Document()
    document.add_paragraph("a blue square in a Word file")
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "yellow", "triangle"
    document.save(str(tmp_path / "shapes.docx"))
    (tmp_path / "page.htm").write_text(
        "<!doctype html><html><head><title>Shapes</title><script>var secret = 1;</script></head>"
        "<body><p>a green star</p><!-- not shown --><div>on the web</div></body></html>", encoding="utf-8")
    write_epub(tmp_path / "book.epub", ["a purple star in chapter one", "an orange circle in chapter two"])
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    assert lib.index([tmp_path / "shapes.docx", tmp_path / "page.htm", tmp_path / "book.epub"]).new == 3
    from sqlalchemy import select

    from indexer.catalog import File, Item

    with lib.Session() as s:
        rows = s.execute(select(File.path, Item.snippet).join(Item).order_by(Item.id)).all()
    text: dict[str, str] = {}
    for path, snippet in rows:  # a file's chunks in order
        name = path.rsplit("/", 1)[1]
        text[name] = " ".join(f"{text.get(name, '')} {snippet}".split())
    assert text["shapes.docx"] == "a blue square in a Word file yellow | triangle"
    assert text["page.htm"] == "Shapes a green star on the web"  # what a reader sees: no script, no comment
    assert text["book.epub"] == "Chapter 1 a purple star in chapter one Chapter 2 an orange circle in chapter two"
