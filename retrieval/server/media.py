"""Files behind results, by item id only: the original (for audio players and downloads) and
cached picture thumbnails.

No request ever names a path: the path comes from the catalog row of the item id. The file is
served only while it is still the regular file that was indexed (same size and mtime), so a file
swapped for a symlink to something else after indexing is refused rather than followed.
"""

from __future__ import annotations

import mimetypes
import os
import stat
import threading
from pathlib import Path
from typing import Any

from indexer.kinds import get_kind
from retrieval.errors import NotFoundError, UsageError
from retrieval.library import Library
from retrieval.paths import THUMBNAIL_DIR

THUMBNAIL_SIZES = (128, 256, 512)
# Thumbnails decode full pictures; a page of results asks for dozens at once.
_thumbnail_slots = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


def indexed_file(lib: Library, item_id: int) -> tuple[dict[str, Any], os.stat_result]:
    """The item and the stat of its file, if the file is still the one that was indexed."""
    info = lib.item(item_id)
    try:
        st = os.stat(info["path"])
    except OSError:
        raise NotFoundError(f"the file of item {item_id} is gone; run `xmr index` to update the library") from None
    if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != (info["size"], info["mtime_ns"]):
        raise NotFoundError(f"the file of item {item_id} changed since it was indexed; run `xmr index` to update the library")
    return info, st


def media_type(info: dict[str, Any]) -> str:
    """What to call the file. Never anything a browser would run: a kind that says how it is
    served (text: always plain text, so an indexed .html or .svg cannot execute in the page's
    origin) is served so; others only as what their name says within their kind (`image/...`)."""
    try:
        kind = get_kind(info["modality"])
    except KeyError:
        return "application/octet-stream"
    if kind.mime:
        return kind.mime
    guessed = mimetypes.guess_type(info["path"])[0] or ""
    if guessed.startswith(kind.name + "/") and "svg" not in guessed:
        return guessed
    return "application/octet-stream"


def thumbnail(lib: Library, item_id: int, size: int) -> Path:
    """A JPEG no larger than size x size of an item whose kind has thumbnails (pictures), made
    once and cached in the library (keyed by the file's content hash, so copies share one;
    `xmr index` deletes those of removed files, see Store.prune_thumbnails)."""
    if size not in THUMBNAIL_SIZES:
        raise UsageError(f"size must be one of {', '.join(map(str, THUMBNAIL_SIZES))}")
    info, _ = indexed_file(lib, item_id)
    kind = get_kind(info["modality"])
    if not kind.has_thumbnail:
        raise NotFoundError(f"item {item_id} is a {info['modality']} item, not a picture")
    folder = lib.path / THUMBNAIL_DIR
    # A kind with a timeline (videos) has a poster per moment: the middle of the item.
    at = (info["start"] + info["end"]) / 2 if kind.timeline and info.get("start") is not None and info.get("end") is not None else None
    moment = f"-t{round(at * 1000)}" if at is not None else ""
    out = folder / f"{info['phash'][:40]}{moment}-{size}.jpg"
    if out.exists():
        return out
    with _thumbnail_slots:
        if out.exists():
            return out
        image = kind.thumbnail(info["path"], size, at=at)  # the indexer's guarded decoder
        image.thumbnail((size, size))
        folder.mkdir(exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        image.save(tmp, "JPEG", quality=85)
        os.replace(tmp, out)
    return out
