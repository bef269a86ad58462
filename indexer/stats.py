"""Library statistics from plain SQL, shared by `Library.stats` and the fast path of `xmr stats`.

Counting files and items takes seconds at 10M rows (each count a full scan), so the counts are
kept in meta (CACHE_KEY) by the end of every index run (indexer.catalog_version.refresh) with
the token that every committed change to those tables renews (VERSION_KEY); a reader uses them
while the tokens match and counts again otherwise.

The fast path reads the default SQLite catalog with the standard library's sqlite3, read-only,
so a cold `xmr stats` imports neither SQLAlchemy (0.4 s here) nor FAISS nor torch. It answers
only for a catalog of the current schema with the vector count recorded; otherwise the caller
opens the library the normal way (which also migrates an older catalog).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Callable

from retrieval.paths import BRIDGE_FILE, INDEX_FILE

SCHEMA_VERSION = 11  # indexer.catalog takes it from here
VERSION_KEY = "catalog_version"
CACHE_KEY = "stats_counts"

Execute = Callable[[str], list[tuple]]


def _meta(execute: Execute) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in execute("SELECT key, value FROM meta")}


def read_stats(execute: Execute) -> dict[str, Any]:
    """Counts and recorded facts of a catalog, through any `execute(sql) -> rows`."""
    meta = _meta(execute)
    kept = meta.get(CACHE_KEY) or {}
    current = (kept.get("version") is not None and kept.get("version") == meta.get(VERSION_KEY)
               and kept.get("schema") == SCHEMA_VERSION)
    return {
        **(kept["counts"] if current else counted(execute)),
        "counts_kept": current,
        # faces found (indexer.face_catalog) and the people they were grouped into
        "faces": execute("SELECT count(id) FROM faces")[0][0],
        "people": execute("SELECT count(id) FROM people")[0][0],
        "people_named": execute("SELECT count(id) FROM people WHERE name IS NOT NULL")[0][0],
        "tags": dict(execute("SELECT label, count(item_id) FROM tags GROUP BY label ORDER BY count(item_id) DESC, label")),
        "ocr": meta.get("ocr_engine"),
        "speech": meta.get("speech_engine"),
        "vectors": meta.get("vectors_total"),
        "encoder": meta.get("encoder"),
        "index_type": meta.get("factory"),
        "index_tuning": meta.get("index_tuning"),
        "index_policy": meta.get("index_policy"),
        "audio_encoder": meta.get("audio_encoder"),
        "bridge": meta.get("bridge"),
        # the files the last commit made current (older libraries: the fixed names)
        "index_file": meta.get("index_file") or (INDEX_FILE if meta.get("vectors_total") is not None else None),
        "bridge_file": meta.get("bridge_file") or (BRIDGE_FILE if meta.get("bridge") else None),
        "roots": [r for (r,) in execute("SELECT path FROM roots ORDER BY path")],
        "schema_version": meta.get("schema_version"),
    }


def counted(execute: Execute) -> dict[str, Any]:
    """What only a scan of files and items can say: one scan of each table, plus those of the
    few rows on a timeline or of documents."""
    files: dict[str, int] = {}
    items: dict[str, int] = {}
    ocr = 0
    for modality, n in execute("SELECT modality, count(id) FROM files GROUP BY modality"):
        files[modality] = n
    for modality, n, with_words in execute(
            "SELECT modality, count(id), count(snippet) FROM items GROUP BY modality"):
        items[modality] = n
        ocr += with_words if modality == "image" else 0  # words read off pictures (OCR)
    return {
        "files": sum(files.values()),
        "files_by_modality": files,
        "items": sum(items.values()),
        "items_by_modality": items,
        "documents_by_type": _by_extension(execute("SELECT path FROM files WHERE modality = 'document'")),
        # the length of what is indexed on a timeline (sounds, videos): each file's last window's end
        "hours_by_modality": {m: round(float(h) / 3600, 4) for m, h in execute(
            'SELECT modality, sum(d) FROM (SELECT modality, max("end") AS d FROM items WHERE "end" IS NOT NULL '
            "GROUP BY file_id, modality) AS f GROUP BY modality")},
        "ocr_pictures": ocr,
        # words heard in sounds and videos (speech)
        "hours_transcribed": round(float(execute(
            "SELECT sum(d) FROM (SELECT max(\"end\") AS d FROM items WHERE embedder = 'text' AND \"end\" IS NOT NULL "
            "GROUP BY file_id) AS f")[0][0] or 0) / 3600, 4),
        # what files say about themselves (indexer.facts)
        "facts": _facts(execute),
        "last_indexed": execute("SELECT max(indexed_at) FROM files")[0][0],
    }


def _facts(execute: Execute) -> dict[str, Any]:
    """How many files carry a date taken, a place, a camera; the cameras; the dates' span."""
    taken, placed, with_camera, first, last = execute(
        "SELECT count(taken_at), count(lat), count(camera_model), min(coalesce(taken_at, mtime_ns / 1e9)), "
        "max(coalesce(taken_at, mtime_ns / 1e9)) FROM files")[0]
    cameras = execute("SELECT camera_model, count(id) FROM files WHERE camera_model IS NOT NULL "
                      "GROUP BY camera_model ORDER BY count(id) DESC, camera_model LIMIT 10")
    return {"with_date_taken": taken, "with_place": placed, "with_camera": with_camera,
            "cameras": dict(cameras), "dates": [first, last] if first is not None else None}


def _by_extension(rows: list[tuple]) -> dict[str, int]:
    """Files per type, by their name's extension ("pdf": 3)."""
    counts: dict[str, int] = {}
    for (path,) in rows:
        ext = Path(path).suffix.lower().lstrip(".") or "none"
        counts[ext] = counts.get(ext, 0) + 1
    return dict(sorted(counts.items()))


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def quick_stats(library: Path, db_file: str) -> dict[str, Any] | None:
    """Stats of the SQLite catalog in `library`, or None when the full path must answer."""
    db = library / db_file
    if not db.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        st = read_stats(lambda sql: conn.execute(sql).fetchall())
    except (sqlite3.Error, ValueError):
        return None
    finally:
        conn.close()
    if st.pop("schema_version") != SCHEMA_VERSION or st["vectors"] is None or st["encoder"] is None:
        return None
    return {"library": str(library), "database": f"sqlite:///{db}", **st, "size_bytes": folder_size(library)}

