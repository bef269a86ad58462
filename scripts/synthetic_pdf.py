"""PDFs written by hand for tests and the hostile corpus: text pages in Helvetica (a text layer
PDFium reads), many pages sharing one content stream, a content stream that inflates hugely.
No PDF library is needed to make them; the format is small enough (PDF 1.4, section 7)."""

from __future__ import annotations

import zlib
from pathlib import Path


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def page_stream(lines: list[str]) -> bytes:
    """A content stream that shows `lines` top-down in 12 pt Helvetica."""
    ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
    for line in lines:
        ops.append(f"({_escape(line)}) Tj T*")
    ops.append("ET")
    return "\n".join(ops).encode("latin-1")


def write_pdf(path: str | Path, pages: list[bytes | int], streams: list[bytes] | None = None,
              deflate: bool = False, size: tuple[int, int] = (612, 792)) -> Path:
    """A PDF whose page i shows content stream `pages[i]` (raw bytes), or the shared stream number
    `pages[i]` of `streams` (so 10,000 pages can share one). With `deflate` the streams are
    compressed (FlateDecode). `size`: each page's, in points."""
    streams = list(streams or [])
    contents: list[int] = []
    for p in pages:
        if isinstance(p, int):
            contents.append(p)
        else:
            streams.append(p)
            contents.append(len(streams) - 1)
    objects: list[bytes] = []  # object n+1 is objects[n]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(b"")  # the page tree, filled in below
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    first_stream = len(objects) + 1
    for data in streams:
        body = zlib.compress(data, 9) if deflate else data
        head = f"<< /Length {len(body)}{' /Filter /FlateDecode' if deflate else ''} >>".encode()
        objects.append(head + b"\nstream\n" + body + b"\nendstream")
    kids = []
    for c in contents:
        kids.append(len(objects) + 1)
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size[0]} {size[1]}] /Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {first_stream + c} 0 R >>".encode())
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>".encode()
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path


def text_pdf(path: str | Path, pages: list[list[str]], deflate: bool = True) -> Path:
    """A PDF with these lines of text on its pages."""
    return write_pdf(path, [page_stream(lines) for lines in pages], deflate=deflate)
