"""Vector search joined with the catalog: query vector -> FAISS -> drop -1 -> SQL -> [Hit].

With more than one modality in a library and no `--type`, each modality is searched on its
own and the lists are merged by calibrated score (retrieval.calibration).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer import words
from indexer.audio_bridge import AudioBridge
from indexer.catalog import File, Item, chunked
from indexer.kinds import get_kind, kind_names
from indexer.models import Models
from indexer.store import Store
from indexer.vectors import VectorIndex
from retrieval.calibration import Calibrator, Channel
from retrieval.errors import NotFoundError, UsageError
from retrieval.hybrid import DEFAULT_MODE, MODES, SOME_WEIGHT, depth, rrf
from retrieval.query import Query



def modalities() -> tuple[str, ...]:
    """What `--type` accepts besides 'any': the registered kinds."""
    return kind_names()


@dataclass
class Hit:
    """One search result. `score` is the cosine similarity to the query vector (in `words` mode,
    which has no query vector, its full-text relevance); `calibrated` (only when modalities are
    mixed, by meaning) is the score that ranked it among other modalities; `fused` (hybrid) the
    one that ranked it among word and meaning finds.
    Each kind fills its location fields: text hits chunk/snippet/char offsets, audio hits the
    window's chunk and `start`/`end` seconds (see indexer.kinds)."""

    path: str
    modality: str
    score: float
    item_id: int
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
    fused: float | None = None  # hybrid search: the Reciprocal Rank Fusion score that ranked it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


GROUP_DEPTH = 10  # grouped search looks this many times deeper, so k files can be filled
MAX_GROUPED = 2000
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
            head.segments.append({"item_id": h.item_id, "score": h.score, "calibrated": h.calibrated,
                                  "chunk": h.chunk, "page": h.page, "start": h.start, "end": h.end, "track": h.track})
    return list(groups.values())


def location(item: Item) -> dict[str, Any]:
    """The location fields a hit of this item's kind carries."""
    try:
        return get_kind(item.modality).hit_fields(item)
    except KeyError:  # a kind this xmr does not know (a newer xmr wrote it): show what there is
        return {"chunk": item.chunk, "snippet": item.snippet, "start": item.start, "end": item.end, "page": item.page}


def _rows(session: Session, ids: Iterable[int]) -> dict[int, tuple[Item, str]]:
    out: dict[int, tuple[Item, str]] = {}
    for part in chunked(ids):
        stmt = select(Item, File.path).join(File).where(Item.id.in_(part))
        for item, path in session.execute(stmt):
            out[item.id] = (item, path)
    return out


def _hits(session: Session, D: np.ndarray, I: np.ndarray) -> list[Hit]:
    """Hits for one query's FAISS answer, best first; vectors whose row is gone are never shown."""
    pairs = [(int(i), float(d)) for d, i in zip(D[0], I[0]) if i != -1]
    rows = _rows(session, [i for i, _ in pairs])
    hits = []
    for item_id, score in pairs:
        row = rows.get(item_id)
        if row is None:  # a vector whose row is gone (crash before commit)
            continue
        item, path = row
        hits.append(Hit(path=path, modality=item.modality, score=score, item_id=item.id, **location(item)))
    return hits


def search_vectors(session: Session, vectors: VectorIndex, xq: np.ndarray, k: int,
                   among: np.ndarray | None = None) -> list[Hit]:
    """Top-k items for one query vector; with `among` (ids the index holds, e.g. one modality's),
    only those are ranked: the work and the rows loaded follow the subset, not the library."""
    if k <= 0 or vectors.ntotal == 0:
        return []
    if among is not None:
        D, I = vectors.search_subset(xq.reshape(1, -1), k, among)
    else:
        D, I = vectors.search(xq.reshape(1, -1), k)
    return _hits(session, D, I)


class Searcher:
    """The query side of one library view: queries, items by id, more like this."""

    def __init__(self, store: Store, models: Models, bridge: AudioBridge) -> None:
        self.store, self.models, self.bridge = store, models, bridge
        self.calibrator = Calibrator()
        self._ids: dict[Channel, np.ndarray] = {}
        self._present: list[Channel] | None = None
        self._ids_of: tuple[VectorIndex, int] | None = None  # the index (and its version) they belong to

    def _follow(self, vecs: VectorIndex) -> None:
        if self._ids_of != (vecs, vecs.version):
            self._ids, self._present, self._ids_of = {}, None, (vecs, vecs.version)

    def present(self, s: Session, vecs: VectorIndex) -> list[Channel]:
        """The (modality, embedder) pairs of the library's items, sorted (kept like `channel_ids`).
        Scores are calibrated per pair: a video's shots and its sound windows score apart."""
        self._follow(vecs)
        if self._present is None:
            rows = s.execute(select(Item.modality, Item.embedder).distinct())
            self._present = sorted((m, e or m) for m, e in rows)
        return self._present

    def channel_ids(self, s: Session, vecs: VectorIndex, channel: Channel) -> np.ndarray:
        """The ids of a channel's items that this index holds, sorted; kept until the index
        changes (a long-lived reader's index can be older than the rows it reads)."""
        self._follow(vecs)
        ids = self._ids.get(channel)
        if ids is None:
            modality, embedder = channel
            stmt = select(Item.id).where(Item.modality == modality, Item.embedder == embedder).order_by(Item.id)
            ids = self._ids[channel] = vecs.present(np.fromiter(s.scalars(stmt), np.int64))
        return ids

    def search(self, query: Query | str | None = None, *, k: int = 10, modality: str | None = None,
               vector: np.ndarray | None = None, group: bool = False, mode: str = DEFAULT_MODE) -> list[Hit]:
        """Best items for a Query (or plain text, or a ready unit vector), best first. `mode`:
        'hybrid' fuses the full-text and the vector rankings (retrieval.hybrid), 'semantic' is
        vectors only, 'words' the full-text index only. With `group`, one hit per file: its best
        item, carrying its best few items in `segments`."""
        if k <= 0:
            raise UsageError(f"k must be positive, got {k}")
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}; choose from: {', '.join(MODES)}")
        if modality in (None, "any"):
            modality = None
        elif modality not in modalities():
            raise UsageError(f"unknown type {modality!r}; choose from: {', '.join(modalities())}, any")
        want = min(MAX_GROUPED, k * GROUP_DEPTH) if group else k
        wq: words.WordQuery | None = None
        if vector is None:
            q = Query(texts=[query]) if isinstance(query, str) else query
            if q is None:
                raise UsageError("nothing to search for")
            q.validate()
            if mode != "semantic" and q.texts:
                wq = words.parse(" ".join(q.texts))
                # the meaning side reads the words without the quotes that mark phrases
                q = replace(q, texts=[t.replace('"', " ").strip() or t for t in q.texts])
            if mode == "words":
                if wq is None or wq.empty:
                    raise UsageError("--mode words needs words to look for (a text query)")
                hits = self._word_hits(wq, want, modality)
                return group_hits(hits, k) if group else hits[:k]
            vecs = self.store.vectors()
            if vecs is None or vecs.ntotal == 0:
                return []
            vector = q.embed(lambda: self.models.encoder, audio=self.bridge.embed_file)
        elif mode == "words":
            raise UsageError("--mode words needs words to look for (a text query)")
        if wq is not None and not wq.empty:
            hits = self._fuse(self._search(vector, depth(want), modality), wq, vector, want, modality)
        else:
            hits = self._search(vector, want, modality)
        return group_hits(hits, k) if group else hits[:k]

    def _word_hits(self, wq: words.WordQuery, n: int, modality: str | None) -> list[Hit]:
        """The full-text index's best n items; `score` is their relevance there."""
        with self.store.Session() as s:
            found = words.search(s, wq, n, modality, every=True)
            held = {i for i, _ in found}
            found += [(i, r) for i, r in words.search(s, wq, n, modality) if i not in held]
            found = found[:n]
            rows = _rows(s, [i for i, _ in found])
        return [Hit(path=rows[i][1], modality=rows[i][0].modality, score=r, item_id=i, words=r, **location(rows[i][0]))
                for i, r in found if i in rows]

    def _fuse(self, semantic: list[Hit], wq: words.WordQuery, vector: np.ndarray, n: int,
              modality: str | None) -> list[Hit]:
        """The meaning and word rankings fused by RRF (retrieval.hybrid); with phrases, only
        items that hold them."""
        with self.store.Session() as s:
            # a phrase filters: look deep enough that the items holding it are all known
            deep = max(depth(n), 1000) if wq.phrases else depth(n)
            every = words.search(s, wq, deep, modality, every=True)
            relevance = dict(every)
            some: list[tuple[int, float]] = []
            if not every:  # nothing holds every word: the items holding some of them, at a lower weight
                some = words.search(s, wq, deep, modality)
            relevance.update(some)
            if wq.phrases:
                semantic = [h for h in semantic if h.item_id in relevance]
            fused = rrf([([i for i, _ in every[: depth(n)]], 1.0), ([h.item_id for h in semantic], 1.0),
                         ([i for i, _ in some[: depth(n)]], SOME_WEIGHT)])[:n]
            by_id = {h.item_id: h for h in semantic}
            rows = _rows(s, [i for i, _ in fused if i not in by_id])
        similarity = self._similarity(vector, list(rows))
        hits = []
        for item_id, f in fused:
            h = by_id.get(item_id)
            if h is None:
                if item_id not in rows:
                    continue
                item, path = rows[item_id]
                h = Hit(path=path, modality=item.modality, score=similarity.get(item_id, 0.0), item_id=item_id,
                        **location(item))
            h.words, h.fused = relevance.get(item_id), f
            hits.append(h)
        return hits

    def _similarity(self, vector: np.ndarray, ids: list[int]) -> dict[int, float]:
        """Cosine of the query to stored vectors (items the full-text side alone found)."""
        vecs = self.store.vectors()
        if vecs is None or not ids:
            return {}
        held = vecs.present(np.asarray(ids, np.int64))
        stored = vecs.reconstruct_many(held)
        norms = np.maximum(np.linalg.norm(stored, axis=1), 1e-12)
        return {int(i): float(v) for i, v in zip(held, stored @ vector / norms)}

    def _search(self, vector: np.ndarray, k: int, modality: str | None) -> list[Hit]:
        vecs = self.store.vectors()
        if vecs is None:
            return []
        with self.store.Session() as s:
            present = self.present(s, vecs)
            channels = [c for c in present if modality is None or c[0] == modality]
            if not channels:
                return []
            if len(channels) == 1:
                among = None if len(present) == 1 else self.channel_ids(s, vecs, channels[0])
                return search_vectors(s, vecs, vector, k, among)
            answers = vecs.search_subsets(vector.reshape(1, -1), k, [self.channel_ids(s, vecs, c) for c in channels])
            found = {c: _hits(s, D, I) for c, (D, I) in zip(channels, answers)}
            calibrated = self.calibrator.calibrate(s, vecs, vector, {c: [h.score for h in f] for c, f in found.items()})
            hits: list[Hit] = []
            for c, f in found.items():
                for h, value in zip(f, calibrated[c]):
                    h.calibrated = value
                hits += f
        hits.sort(key=lambda h: h.calibrated if h.calibrated is not None else h.score, reverse=True)
        return hits[:k]

    def item(self, item_id: int) -> dict[str, Any]:
        """One item with its file: what a result links to. NotFoundError when it is not there."""
        with self.store.Session() as s:
            row = s.execute(select(Item, File).join(File).where(Item.id == int(item_id))).first()
            if row is None:
                raise NotFoundError(f"no item {item_id} in this library")
            item, f = row
            return {
                "item_id": item.id, "path": f.path, "modality": item.modality,
                "chunk": None, "snippet": item.snippet, "char_start": item.char_start, "char_end": item.char_end,
                "start": item.start, "end": item.end, **location(item),
                "file_id": f.id, "size": f.size, "mtime_ns": f.mtime_ns, "phash": f.phash,
                "indexed_at": f.indexed_at, "file_items": len(f.items),
            }

    def item_vector(self, item_id: int) -> np.ndarray:
        """An item's stored vector, unit length (NotFoundError when the index lacks it)."""
        vecs = self.store.vectors()
        if vecs is None or not np.isin(np.int64(item_id), vecs.ids()):
            raise NotFoundError(f"item {item_id} has no vector in the loaded index (yet); try again in a moment")
        vector = np.asarray(vecs.reconstruct(int(item_id)), np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def similar(self, item_id: int, *, k: int = 10, modality: str | None = None) -> list[Hit]:
        """More like this: the nearest items to a library item's own vector, other files only
        (the item's neighbouring windows or chunks would crowd out everything else)."""
        info = self.item(item_id)
        hits = self.search(k=k + info["file_items"], modality=modality, vector=self.item_vector(item_id))
        return [h for h in hits if h.path != info["path"]][:k]
