"""Search results: the Hit a query returns, made from catalog rows with their file's facts and
the item's tags and faces; one hit per file (grouping); a list's order by date."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.catalog import File, Item, Tag, chunked
from indexer.kinds import get_kind


@dataclass
class Hit:
    """One search result. `score` is what orders the list, best first: the cosine to the query
    when one kind is searched by meaning; with kinds mixed or words beside meaning, `calibrated`
    (how far the cosine stands above the query's usual cosine in its kind, in standard deviations)
    plus, in hybrid search, the lift of holding every word of the query (retrieval.hybrid); in
    `words` mode the full-text relevance. `cosine` is the cosine to the query vector, `words` the
    full-text relevance (BM25 / ts_rank_cd) when the item's words matched.
    Each kind fills its location fields: text hits chunk/snippet/char offsets, audio hits the
    window's chunk and `start`/`end` seconds (see indexer.kinds). The file's facts follow: its
    date (taken, else modified; epoch seconds), size, camera, place, pixel size, duration."""

    path: str
    modality: str
    score: float
    item_id: int
    cosine: float | None = None
    chunk: int | None = None
    snippet: str | None = None
    char_start: int | None = None
    char_end: int | None = None
    start: float | None = None
    end: float | None = None
    page: int | None = None  # a document's page, from 1
    confidence: float | None = None  # how sure OCR or speech recognition was of `snippet`, 0..1
    track: str | None = None  # a video's: "picture" (a shot) or "sound" (a window of its sound)
    calibrated: float | None = None
    segments: list[dict[str, Any]] | None = None  # grouped: the file's best items, best first
    words: float | None = None  # its relevance in the full-text index (BM25 / ts_rank_cd), when its words matched
    date: float | None = None  # when taken (EXIF), else last modified; epoch seconds
    taken_at: float | None = None  # EXIF date taken, when the file has one
    size: int | None = None  # bytes
    camera: str | None = None  # make and model
    lat: float | None = None
    lon: float | None = None
    width: int | None = None  # pixels
    height: int | None = None
    duration: float | None = None  # seconds
    tags: list[dict[str, Any]] | None = None  # [{label, confidence}], most sure first
    faces: list[dict[str, Any]] | None = None  # faces seen in a picture or shot: [{id, box, person, name}]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_fields(f: File) -> dict[str, Any]:
    """A file's facts as hit fields."""
    camera = " ".join(x for x in (f.camera_make, f.camera_model) if x) or None
    if f.camera_make and f.camera_model and \
            f.camera_model.split()[0].lower() == f.camera_make.split()[0].lower():
        camera = f.camera_model  # "NIKON CORPORATION NIKON D750" reads badly: models often repeat the make
    return {"date": f.taken_at if f.taken_at is not None else f.mtime_ns / 1e9, "taken_at": f.taken_at,
            "size": f.size, "camera": camera, "lat": f.lat, "lon": f.lon, "width": f.width, "height": f.height,
            "duration": f.duration}


GROUP_SEGMENTS = 5


def group_hits(hits: list[Hit], k: int) -> list[Hit]:
    """One hit per file, in the order of each file's best hit; each keeps its file's best
    GROUP_SEGMENTS items (where, score, track) in `segments`."""
    groups: dict[str, Hit] = {}
    for h in hits:
        head = groups.get(h.path)
        if head is None:
            if len(groups) == k:
                continue
            head = groups[h.path] = Hit(**{**asdict(h), "segments": []})
        if head.segments is not None and len(head.segments) < GROUP_SEGMENTS:
            head.segments.append({"item_id": h.item_id, "score": h.score, "cosine": h.cosine, "calibrated": h.calibrated,
                                  "chunk": h.chunk, "page": h.page, "start": h.start, "end": h.end, "track": h.track})
    return list(groups.values())


def by_date(hits: list[Hit]) -> list[Hit]:
    """Newest first; hits of one date keep their order of relevance."""
    return sorted(hits, key=lambda h: -(h.date or 0.0))


def location(item: Item) -> dict[str, Any]:
    """The location fields a hit of this item's kind carries."""
    try:
        return get_kind(item.modality).hit_fields(item)
    except KeyError:  # a kind this xmr does not know (a newer xmr wrote it): show what there is
        return {"chunk": item.chunk, "snippet": item.snippet, "start": item.start, "end": item.end, "page": item.page}


Rows = dict[int, tuple[Item, File]]


def load_rows(session: Session, ids: Iterable[int]) -> Rows:
    """Items by id with their files."""
    out: Rows = {}
    for part in chunked(ids):
        for item, f in session.execute(select(Item, File).join(File).where(Item.id.in_(part))):
            out[item.id] = (item, f)
    return out


def make_hit(item: Item, f: File, score: float, **extra: Any) -> Hit:
    return Hit(path=f.path, modality=item.modality, score=score, item_id=item.id, **location(item),
               **file_fields(f), **extra)


def hits_from(session: Session, D: np.ndarray, I: np.ndarray) -> list[Hit]:
    """Hits for one query's FAISS answer, best first; vectors whose row is gone are never shown."""
    pairs = [(int(i), float(d)) for d, i in zip(D[0], I[0]) if i != -1]
    rows = load_rows(session, [i for i, _ in pairs])
    return [make_hit(*rows[i], score, cosine=score) for i, score in pairs if i in rows]  # a row gone: crash before commit


def add_tags(session: Session, hits: list[Hit]) -> list[Hit]:
    """Fill each hit's `tags` and `faces` from the catalog (only for the hits a page shows)."""
    from indexer.people_store import faces_of_items

    faces = faces_of_items(session, [h.item_id for h in hits])
    for h in hits:
        h.faces = faces.get(h.item_id)
    ids = [h.item_id for h in hits]
    found: dict[int, list[dict[str, Any]]] = {}
    for part in chunked(ids):
        for item_id, label, conf in session.execute(select(Tag.item_id, Tag.label, Tag.confidence)
                                                    .where(Tag.item_id.in_(part))):
            found.setdefault(item_id, []).append({"label": label, "confidence": round(float(conf), 4)})
    for h in hits:
        h.tags = sorted(found.get(h.item_id, []), key=lambda t: -t["confidence"])
    return hits
