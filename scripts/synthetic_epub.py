"""EPUB books written here for tests and the hostile corpus (EPUB 3's minimum: the stored
mimetype first, META-INF/container.xml, a package file with manifest and spine, XHTML chapters)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import escape


def write_epub(path: str | Path, chapters: list[str], title: str = "A book") -> Path:
    path = Path(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")  # stored, first: its magic
        z.writestr("META-INF/container.xml",
                   '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
                   '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
                   "</rootfiles></container>", compress_type=zipfile.ZIP_DEFLATED)
        items = "".join(f'<item id="c{i}" href="ch{i}.xhtml" media-type="application/xhtml+xml"/>' for i in range(len(chapters)))
        spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
        z.writestr("OEBPS/content.opf",
                   f'<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">'
                   f'<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{escape(title)}</dc:title></metadata>'
                   f"<manifest>{items}</manifest><spine>{spine}</spine></package>", compress_type=zipfile.ZIP_DEFLATED)
        for i, text in enumerate(chapters):
            z.writestr(f"OEBPS/ch{i}.xhtml",
                       f'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head><title>Chapter {i + 1}</title>'
                       f"</head><body><p>{escape(text)}</p></body></html>", compress_type=zipfile.ZIP_DEFLATED)
    return path
