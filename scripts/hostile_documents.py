"""The PDFs of the hostile corpus (scripts/hostile_corpus.py): each made here, small, with what
indexing must make of it ("indexed", modality) or a part of its skip reason ("a|b": either)."""

from __future__ import annotations

import zlib
from pathlib import Path

from scripts.synthetic_pdf import page_stream, text_pdf, write_pdf

BROKEN = "broken PDF|no text layer"
EXPECTED_DOCUMENTS: dict[str, tuple[str, str]] = {
    "good.pdf": ("indexed", "document"),
    "encrypted.pdf": ("skipped", "encrypted"),
    "truncated.pdf": ("skipped", BROKEN),
    "pages-10000.pdf": ("indexed", "document"),  # its first MAX_PAGES pages
    "inflates-to-128MiB.pdf": ("skipped", "decompression bomb"),
    "scanned-no-text.pdf": ("skipped", "no text layer"),
    # 200 x 200 inches, no text layer: OCR renders it capped at OCR_SIDE pixels, not 60,000
    "page-200in-no-text.pdf": ("skipped", "no text layer"),
    "empty.pdf": ("skipped", "broken PDF"),
    "text-named.pdf": ("skipped", "broken PDF"),
    "good.docx": ("indexed", "document"),
    "inflates-to-100MiB.docx": ("skipped", "zip bomb"),
    "not-a-zip.docx": ("skipped", "not a DOCX"),
    "page.html": ("indexed", "document"),
    "scripts-only.html": ("skipped", "no text"),
    "good.epub": ("indexed", "document"),
    "no-package.epub": ("skipped", "broken EPUB"),
}


def make_good_document(folder: Path) -> None:
    text_pdf(folder / "good.pdf", [["a red circle on page one"], ["a blue square on page two"]])


def make_hostile_documents(folder: Path) -> dict[str, tuple[str, str]]:
    from pypdf import PdfReader, PdfWriter

    make_good_document(folder)
    writer = PdfWriter(clone_from=PdfReader(str(folder / "good.pdf")))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")  # no extra crypto package
    with open(folder / "encrypted.pdf", "wb") as f:
        writer.write(f)
    long = text_pdf(folder / "long.tmp", [[f"line {i} of page {p}" for i in range(40)] for p in range(6)]).read_bytes()
    (folder / "truncated.pdf").write_bytes(long[: len(long) // 3])
    (folder / "long.tmp").unlink()
    write_pdf(folder / "pages-10000.pdf", [0] * 10_000, streams=[page_stream(["the same page, ten thousand times"])])
    bomb = zlib.compressobj(9)
    spaces = b" " * (1 << 20)
    body = b"".join(bomb.compress(spaces) for _ in range(128)) + bomb.flush()
    write_pdf(folder / "inflates-to-128MiB.pdf", [0], streams=[body], deflate=False)
    _mark_deflated(folder / "inflates-to-128MiB.pdf", len(body))
    write_pdf(folder / "scanned-no-text.pdf", [b"q 612 0 0 792 0 0 cm Q"])  # a page that draws no text
    write_pdf(folder / "page-200in-no-text.pdf", [b"0 0 14400 14400 re S"], size=(14400, 14400))
    (folder / "empty.pdf").write_bytes(b"")
    (folder / "text-named.pdf").write_text("a note that calls itself a PDF", encoding="utf-8")
    _office(folder)
    return dict(EXPECTED_DOCUMENTS)


def _office(folder: Path) -> None:
    import zipfile

    import docx

    document = docx.Document()
    document.add_paragraph("a green star in a Word file")
    document.save(str(folder / "good.docx"))
    with zipfile.ZipFile(folder / "inflates-to-100MiB.docx", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("word/document.xml", "w", force_zip64=True) as part:
            for _ in range(100):
                part.write(b" " * (1 << 20))
    (folder / "not-a-zip.docx").write_text("a note that calls itself a Word file", encoding="utf-8")
    (folder / "page.html").write_text("<!doctype html><title>Shapes</title><p>a yellow triangle</p>", encoding="utf-8")
    (folder / "scripts-only.html").write_text("<html><script>alert(1)</script></html>", encoding="utf-8")
    from scripts.synthetic_epub import write_epub

    write_epub(folder / "good.epub", ["a red square in a book"])
    with zipfile.ZipFile(folder / "no-package.epub", "w") as z:  # the magic, then nothing a reader needs
        z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")


def _mark_deflated(path: Path, length: int) -> None:
    """The bomb's stream was compressed here: say so in its dictionary."""
    data = path.read_bytes()
    data = data.replace(f"<< /Length {length} >>".encode(), f"<< /Length {length} /Filter /FlateDecode >>".encode(), 1)
    path.write_bytes(data)
