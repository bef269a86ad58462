"""The text of documents that are not PDFs: HTML (lxml) and Word's DOCX (python-docx), as
(page, text) parts like `document.pdf_pages` gives (page None: these formats have no pages).

HTML: the text a reader sees (scripts, styles and comments dropped), up to MAX_BYTES of file.
DOCX is a zip: before python-docx opens it, the sizes its entries declare are added up, and a
file whose parts would inflate beyond MAX_BYTES is skipped as a zip bomb (python's zipfile
never inflates an entry past its declared size, so the declared sizes bound the work).
"""

from __future__ import annotations

import os
import zipfile
from typing import Iterator

from indexer.kinds.base import read_failure
from retrieval.errors import DecodeError

MAX_BYTES = 64 * 1024 * 1024
_BLOCKS = ("p", "div", "br", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
           "header", "footer", "blockquote", "pre", "dt", "dd", "figcaption", "title")


def html_parts(path: str) -> Iterator[tuple[int | None, str]]:
    import lxml.etree
    import lxml.html

    try:
        if os.path.getsize(path) > MAX_BYTES:
            raise DecodeError(f"HTML file larger than {MAX_BYTES >> 20} MiB")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise read_failure(e) from None
    if not data.strip():
        raise DecodeError("no text in file")
    try:
        root = lxml.html.document_fromstring(data)
    except (lxml.etree.ParserError, ValueError) as e:
        raise DecodeError(f"broken HTML ({e})") from None
    for bad in root.xpath("//script|//style|//noscript|//template|//comment()"):
        bad.drop_tree() if hasattr(bad, "drop_tree") else bad.getparent().remove(bad)
    title = " ".join((root.findtext(".//title") or "").split())
    for block in root.iter(*_BLOCKS):  # a block ends a line, as a browser shows it
        block.tail = "\n" + (block.tail or "")
    body = root.find("body")
    text = (body if body is not None else root).text_content()
    lines = [" ".join(line.split()) for line in text.splitlines()]
    yield None, "\n".join(part for part in [title, *lines] if part)


def docx_parts(path: str) -> Iterator[tuple[int | None, str]]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        with zipfile.ZipFile(path) as z:
            declared = sum(info.file_size for info in z.infolist())
    except OSError as e:
        raise read_failure(e) from None
    except (zipfile.BadZipFile, ValueError) as e:
        raise DecodeError(f"not a DOCX file (not a zip: {e})") from None
    if declared > MAX_BYTES:
        raise DecodeError(f"its parts would inflate to {declared >> 20} MiB (a zip bomb)")
    try:
        document = docx.Document(path)
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise DecodeError(f"broken DOCX ({type(e).__name__}: {e})") from None
    paragraphs = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            paragraphs.append(" | ".join(cell.text for cell in row.cells))
    yield None, "\n".join(p for p in paragraphs if p.strip())
