"""The text of documents that are not PDFs: HTML (lxml), Word's DOCX (python-docx) and EPUB
(its XHTML chapters in reading order, lxml), as (page, text) parts like `document.pdf_pages`
gives (page None: these formats have no pages).

HTML: the text a reader sees (scripts, styles and comments dropped), up to MAX_BYTES of file.
DOCX and EPUB are zips: before one is read, the sizes its entries declare are added up, and a
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
    try:
        if os.path.getsize(path) > MAX_BYTES:
            raise DecodeError(f"HTML file larger than {MAX_BYTES >> 20} MiB")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise read_failure(e) from None
    yield None, html_text(data)


def html_text(data: bytes) -> str:
    """The text a reader of this HTML sees: title, then a line per block."""
    import lxml.etree
    import lxml.html

    if not data.strip():
        return ""
    try:
        root = lxml.html.document_fromstring(data)
    except (lxml.etree.ParserError, ValueError) as e:
        raise DecodeError(f"broken HTML ({e})") from None
    for bad in root.xpath("//script|//style|//noscript|//template|//comment()"):
        parent = bad.getparent()
        if parent is None:  # an XML declaration or a comment outside <html>: shows nothing anyway
            continue
        if hasattr(bad, "drop_tree"):
            bad.drop_tree()  # keeps the text after it
        else:
            parent.remove(bad)
    title = " ".join((root.findtext(".//title") or "").split())
    for block in root.iter(*_BLOCKS):  # a block ends a line, as a browser shows it
        block.tail = "\n" + (block.tail or "")
    body = root.find("body")
    text = (body if body is not None else root).text_content()
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(part for part in [title, *lines] if part)


def _open_zip(path: str, what: str) -> zipfile.ZipFile:
    """The zip, once the sizes its entries declare stay within MAX_BYTES."""
    try:
        z = zipfile.ZipFile(path)
    except OSError as e:
        raise read_failure(e) from None
    except (zipfile.BadZipFile, ValueError) as e:
        raise DecodeError(f"not {what} file (not a zip: {e})") from None
    declared = sum(info.file_size for info in z.infolist())
    if declared > MAX_BYTES:
        z.close()
        raise DecodeError(f"its parts would inflate to {declared >> 20} MiB (a zip bomb)")
    return z


_OPF = {"opf": "http://www.idpf.org/2007/opf"}
_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}rootfile"


def epub_parts(path: str) -> Iterator[tuple[int | None, str]]:
    """An EPUB's chapters in reading order (its spine), each as the text of its XHTML."""
    import posixpath
    from urllib.parse import unquote

    import lxml.etree

    with _open_zip(path, "an EPUB") as z:
        try:
            rootfile = lxml.etree.fromstring(z.read("META-INF/container.xml")).find(f".//{_CONTAINER}")
            opf_path = rootfile.get("full-path") if rootfile is not None else None
            if not opf_path:
                raise DecodeError("broken EPUB (no package file named in META-INF/container.xml)")
            opf = lxml.etree.fromstring(z.read(opf_path))
        except (KeyError, lxml.etree.XMLSyntaxError, zipfile.BadZipFile) as e:
            raise DecodeError(f"broken EPUB ({type(e).__name__}: {e})") from None
        manifest = {item.get("id"): item.get("href") for item in opf.iterfind(".//opf:manifest/opf:item", _OPF)}
        base = posixpath.dirname(opf_path)
        for ref in opf.iterfind(".//opf:spine/opf:itemref", _OPF):
            href = manifest.get(ref.get("idref"))
            if not href:
                continue
            try:
                data = z.read(posixpath.normpath(posixpath.join(base, unquote(href))))
            except (KeyError, zipfile.BadZipFile):
                continue  # a chapter the book names but does not hold
            yield None, html_text(data)


def docx_parts(path: str) -> Iterator[tuple[int | None, str]]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    _open_zip(path, "a DOCX").close()
    try:
        document = docx.Document(path)
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise DecodeError(f"broken DOCX ({type(e).__name__}: {e})") from None
    paragraphs = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            paragraphs.append(" | ".join(cell.text for cell in row.cells))
    yield None, "\n".join(p for p in paragraphs if p.strip())
