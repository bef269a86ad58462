"""Documents: PDF (by content, `%PDF-`), its text layer read by PDFium (pypdfium2); HTML, DOCX
and EPUB (indexer.kinds.office).

PDFium (Chrome's PDF engine; Apache-2.0/BSD) is fast, reads damaged files the way browsers do
and has no AGPL strings attached (MuPDF has). Each page's text is split like a text file's
(indexer.kinds.text.chunk_text), chunks never spanning pages: every chunk is an item with its
`page` (from 1), snippet and character offsets within that page's text.

Guards, because a PDF is a program of sorts: at most MAX_PAGES pages are read (the rest is
left out); before PDFium reads a page, its content streams (and the forms it draws) are
inflated with a cap by pypdf's parser, without decoding them fully, and a stream that would
inflate beyond MAX_STREAM_BYTES makes the file a decompression bomb, skipped. Encrypted files
are skipped with that reason. A page without a text layer (a scan) is rendered at 300 dpi and
read by OCR (indexer.ocr) when OCR is on; its chunks carry the reader's confidence.
"""

from __future__ import annotations

import zlib
from typing import Any, Iterator

from indexer.kinds.base import DecodeContext, MediaKind, Segment, read_failure
from indexer.kinds.text import chunk_text
from retrieval.errors import DecodeError

MAX_PAGES = 2000
MAX_STREAM_BYTES = 64 * 1024 * 1024
MAX_PAGE_CHARS = 1_000_000
MIN_TEXT_LAYER = 8  # characters: a page with fewer is taken for a scan and read by OCR
RENDER_DPI = 300


def _render(page: Any) -> Any:
    """A page as a grey PIL image for OCR: 300 dpi, the long side at most OCR_SIDE pixels."""
    from indexer.ocr import OCR_SIDE

    width, height = page.get_size()  # points
    scale = min(RENDER_DPI / 72, OCR_SIDE / max(width, height, 1.0))
    return page.render(scale=scale, grayscale=True).to_pil()


def _inflated_size(raw: bytes, cap: int) -> int:
    """How far `raw` (FlateDecode data) inflates, counting no further than `cap`."""
    d = zlib.decompressobj()
    total = 0
    try:
        chunk = d.decompress(raw, 1 << 20)
        while True:
            total += len(chunk)
            if total > cap or not d.unconsumed_tail:
                return total
            chunk = d.decompress(d.unconsumed_tail, 1 << 20)
    except zlib.error:
        return total  # a damaged stream: PDFium reads what it can of it


def _streams(obj: Any, depth: int = 0) -> Iterator[Any]:
    """The content streams of a page (or a form XObject), and those of the forms it draws."""
    from pypdf.generic import ArrayObject

    contents = obj.get("/Contents")
    if contents is not None:
        contents = contents.get_object()
        for c in contents if isinstance(contents, ArrayObject) else [contents]:
            yield c.get_object()
    if depth < 3:
        xobjects = (obj.get("/Resources") or {}).get_object().get("/XObject") if obj.get("/Resources") else None
        for ref in (xobjects.get_object().values() if xobjects else []):
            x = ref.get_object()
            if x.get("/Subtype") == "/Form":
                yield x
                yield from _streams(x, depth + 1)


def check_bombs(path: str, pages: int) -> None:
    """DecodeError when a content stream of the first `pages` pages inflates beyond the cap."""
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its notes on damaged files are not ours to print
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            return  # PDFium says so
        for page in reader.pages[:pages]:
            for stream in _streams(page):
                filters = stream.get("/Filter")
                raw = getattr(stream, "_data", b"") or b""
                if filters in ("/FlateDecode", "/Fl") and _inflated_size(raw, MAX_STREAM_BYTES) > MAX_STREAM_BYTES:
                    raise DecodeError(f"a page's content inflates beyond {MAX_STREAM_BYTES >> 20} MiB (a decompression bomb)")
    except DecodeError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, RecursionError, OSError):
        return  # pypdf cannot follow it; PDFium, more forgiving, decides


def pdf_pages(path: str, ocr: Any = None) -> Iterator[tuple[int, str, float | None]]:
    """(page number from 1, its text, None) of the first MAX_PAGES pages; with an OCR reader
    (indexer.ocr.Reader), a page without a text layer is rendered and read: (number, its words,
    the reader's confidence)."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(path)
    except FileNotFoundError:
        raise DecodeError("file vanished") from None
    except pdfium.PdfiumError as e:
        if "password" in str(e).lower():
            raise DecodeError("encrypted PDF (it needs a password)") from None
        raise DecodeError(f"broken PDF ({str(e).splitlines()[0]})") from None
    try:
        n = min(len(pdf), MAX_PAGES)
        check_bombs(path, n)
        for i in range(n):
            page = pdf[i]
            try:
                textpage = page.get_textpage()
                try:
                    text = textpage.get_text_range()[:MAX_PAGE_CHARS]
                finally:
                    textpage.close()
                if ocr is not None and len(text.strip()) < MIN_TEXT_LAYER:  # a scanned page: its print is a picture
                    words = ocr.read(_render(page))
                    if words is not None:
                        yield i + 1, words.text, words.confidence
                        continue
            finally:
                page.close()
            yield i + 1, text.replace("\r\n", "\n"), None
    finally:
        pdf.close()


def _format_by_content(head: bytes, ext: str) -> str | None:
    """"pdf", "docx", "epub" or "html" by the first bytes (a DOCX is a zip like any other, so
    it also needs its name); None when they say none of these."""
    if head.lstrip(b"\x00\t\n\r ").startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        if head[30:58] == b"mimetypeapplication/epub+zip":
            return "epub"
        return "docx" if ext == ".docx" else None
    if head.lstrip(b"\xef\xbb\xbf\x00\t\n\r ").lower().startswith((b"<!doctype html", b"<html")):
        return "html"
    return None


class DocumentKind(MediaKind):
    name = "document"
    label = "Documents"
    noun = "document"
    extensions = frozenset({".pdf", ".html", ".htm", ".xhtml", ".docx", ".epub"})
    location = ("chunk", "snippet", "char_start", "char_end", "page", "confidence")
    readers = ("ocr",)  # scanned pages
    view = "snippet"

    def sniff(self, head: bytes, ext: str) -> bool:
        return _format_by_content(head, ext) is not None

    def decode(self, path: str, ctx: DecodeContext) -> Iterator[Segment]:
        from indexer.kinds.office import docx_parts, epub_parts, html_parts

        fmt = document_format(path)
        reader = ctx.ocr() if fmt == "pdf" else None
        if fmt == "pdf":
            parts = pdf_pages(path, reader)
        else:
            office = {"docx": docx_parts, "epub": epub_parts, "html": html_parts}[fmt]
            parts = ((number, text, None) for number, text in office(path))
        index = 0
        for number, text, confidence in parts:
            for c in chunk_text(text, ctx.count_tokens, ctx.context_length):
                yield Segment(c.text, embedder="text", chunk=index, char_start=c.char_start, char_end=c.char_end,
                              snippet=c.text, page=number, confidence=confidence)
                index += 1
        if index == 0:
            if fmt != "pdf":
                raise DecodeError("no text in it")
            raise DecodeError("no words in it: no text layer, and OCR found none" if reader is not None else
                              "no text layer in it (scanned pages are pictures: reading them takes OCR, which is off)")


def document_format(path: str) -> str:
    """"pdf", "docx", "epub" or "html": by content, then by extension."""
    import os

    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise read_failure(e) from None
    ext = os.path.splitext(path)[1].lower()
    by_name = {".docx": "docx", ".epub": "epub", ".html": "html", ".htm": "html", ".xhtml": "html"}
    return _format_by_content(head, ext) or by_name.get(ext, "pdf")
