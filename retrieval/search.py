"""Vector search joined with the catalog: query vector -> FAISS -> drop -1 -> SQL -> [Hit].

With more than one modality in a library and no `--type`, each modality is searched on its
own and the lists are merged by calibrated score (retrieval.calibration).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import Any, Hashable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer import words
from indexer.audio_bridge import AudioBridge
from indexer.catalog import File, Item, get_meta
from indexer.models import Models
from indexer.store import Store
from indexer.vectors import VectorIndex
from retrieval import ranking
from retrieval.calibration import Calibrator, Channel
from retrieval.cutoff import AUTO, MAX_RESULTS
from retrieval.errors import NotFoundError, UsageError
from retrieval.filters import Filters, matching_ids
from retrieval.hits import Hit, add_tags, by_date, group_hits, hits_from, load_rows, location, make_hit
from retrieval.hybrid import DEPTH
from retrieval.paging import Cand, Memo, RankedList, extend, query_key
from retrieval.query import Query
from retrieval.request import Resolved, SearchRequest


GROUP_DEPTH = 10  # grouped search looks this many times deeper, so k files can be filled
MAX_GROUPED = 2000
# A fused (hybrid) list is computed this long for its first n hits: in fixed steps, so a first
# page and a longer list come from the same computation and concatenate exactly (vector-only and
# words-only lists are the same at any length).
BLOCKS = (DEPTH, 200, 1000, 2000, MAX_RESULTS)


def block(n: int) -> int:
    return next((b for b in BLOCKS if b >= n), n)


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
    return hits_from(session, D, I)


@dataclass(frozen=True)
class Plan:
    """What one ranked list is computed from."""

    vector: np.ndarray | None
    wq: words.WordQuery | None
    need: int
    modality: str | None
    group: bool
    mode: str
    filters: Filters | None
    cut: str | float | None
    sort: str


class Searcher:
    """The query side of one library view: queries, items by id, more like this."""

    def __init__(self, store: Store, models: Models, bridge: AudioBridge) -> None:
        self.store, self.models, self.bridge = store, models, bridge
        self.calibrator = Calibrator()
        self._ids: dict[Channel, np.ndarray] = {}
        self._present: list[Channel] | None = None
        self._ids_of: tuple[VectorIndex, int] | None = None  # the index (and its version) they belong to
        self._allowed: dict[Hashable, np.ndarray] = {}  # the items that pass a filter, by (filter, version)
        self.memo = Memo()

    def _follow(self, vecs: VectorIndex) -> None:
        if self._ids_of != (vecs, vecs.version):
            self._ids, self._present, self._ids_of = {}, None, (vecs, vecs.version)
            self._allowed = {}

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

    def search(self, r: Resolved) -> list[Hit]:
        """Best items for a resolved request (retrieval.request), best first. `mode`: 'hybrid'
        ranks by meaning with the words lifting what holds them all (retrieval.hybrid), 'semantic'
        is vectors only, 'words' the full-text index only. With `group`, one hit per file: its best
        item, carrying its best few items in `segments`. `filters` keep the items that pass
        (retrieval.filters); `offset` skips that many hits (pages: the query is not encoded
        again); `cutoff` ends the list at a minimum cosine or, 'auto', where hits stop standing
        out (retrieval.cutoff); `sort='date'` orders the hits that pass the cutoff ('auto' when
        none is given) newest first."""
        if r.faces:
            from retrieval.face_search import by_face

            with self.store.Session() as s:
                return add_tags(s, by_face(s, self.store.path, r, self.search))
        mode, cut, vector = r.mode, r.cutoff, r.vector
        if r.sort == "date" and cut is None:
            cut = AUTO
        if mode == "words" and cut not in (None, AUTO):
            raise UsageError("--mode words ranks by word relevance, not by a score: use --cutoff auto there")
        filters = r.filters if not r.filters.empty else None
        wq, q = self._words_and_meaning(r)
        what = query_key(q) if q is not None else ("vector", np.asarray(vector, np.float32).tobytes())
        key = (what, r.modality, r.group, mode if wq is not None else "semantic", filters, cut, r.sort)
        with self.store.Session() as s:
            vecs = self.store.vectors()
            # the index by a weak reference: a list is never served from an index since let go
            # (an id() could be reused by the next one), nor does the memo keep an old index alive
            version = (weakref.ref(vecs) if vecs is not None else None, vecs.version if vecs is not None else -1,
                       get_meta(s, "tags_version", 0) if filters and filters.tags else 0,
                       get_meta(s, "people_version", 0) if filters and filters.persons else 0)
            old = self.memo.ranked(key, version)
            need = r.offset + r.k
            if old is None or not (old.complete or len(old.cands) >= need):
                if mode != "words" and vector is None and (vecs is None or vecs.ntotal == 0):
                    return []
                if mode != "words" and vector is None:
                    vector = self._embed(what, q)
                plan = Plan(vector, wq, need, r.modality, r.group, mode, filters, cut, r.sort)
                old = extend(old, self._rank(s, plan, old))
                self.memo.keep_ranked(key, version, old)
            page = old.cands[r.offset:need]
            if r.group or r.sort == "date":  # these lists hold finished hits (rows read to group and sort)
                return add_tags(s, list(page))  # type: ignore[arg-type]
            return add_tags(s, self._materialise(s, page))

    @staticmethod
    def _words_and_meaning(r: Resolved) -> tuple[words.WordQuery | None, Query | None]:
        """The words side's query (None: meaning only) and the meaning side's (None: a ready vector)."""
        q, wq = r.query, None
        if r.vector is None:
            if q is None:
                raise UsageError("nothing to search for")
            q.validate()
            if r.mode != "semantic" and q.texts:
                wq = words.parse(" ".join(q.texts))
                # the meaning side reads the words without the quotes that mark phrases
                q = replace(q, texts=[t.replace('"', " ").strip() or t for t in q.texts])
        if r.mode == "words" and (wq is None or wq.empty):
            raise UsageError("--mode words needs words to look for (a text query)")
        return (wq if wq is not None and not wq.empty else None), q

    def _embed(self, key: Hashable, q: Query | None) -> np.ndarray:
        v = self.memo.vector(key)
        if v is None:
            assert q is not None
            v = q.embed(lambda: self.models.encoder, audio=self.bridge.embed_file)
            self.memo.keep_vector(key, v)
        return v

    def _rank(self, s: Session, p: Plan, old: RankedList | None) -> RankedList:
        """The ranked list, long enough for `p.need` hits (after cutoff, grouping and sorting)."""
        vector, wq, need, modality, group, mode, filters, cut, sort = \
            p.vector, p.wq, p.need, p.modality, p.group, p.mode, p.filters, p.cut, p.sort
        n = max(need, old.length * 2 if old else 0)
        if wq is not None and mode == "hybrid":
            n = block(n)
        if cut is not None:
            n = max(n, 200)
        allowed = self._allowed_ids(s, filters, modality)
        while True:
            want = min(MAX_GROUPED, n * GROUP_DEPTH) if group else n
            every: set[int] = set()
            if mode == "words":
                assert wq is not None
                cands, every = ranking.word_cands(s, wq, want, modality, allowed)
            else:
                assert vector is not None
                cands = self._vector_cands(s, vector, ranking.depth_for(wq, want), modality, allowed)
                if wq is not None:
                    cands, every = ranking.fuse(s, self.calibrator, self.store.vectors(), cands, wq, vector, want,
                                                (modality, allowed))
            ran_dry = len(cands) < want
            if cut is not None:
                kept = ranking.apply_cutoff(s, self.calibrator, self.store.vectors(), vector, cands, cut, every)
                if len(kept) < len(cands) or ran_dry or n >= MAX_RESULTS:
                    cands, ran_dry = kept, True
                else:  # every hit stood out: look deeper
                    n = min(MAX_RESULTS, n * 5)
                    continue
            break
        if not group and sort != "date":
            return RankedList(cands[:n], ran_dry, n)
        hits = self._materialise(s, cands)
        if group:
            hits = group_hits(hits, n)
        if sort == "date":
            hits = by_date(hits)
        return RankedList(hits, ran_dry or cut is not None, n)  # type: ignore[arg-type]

    def _materialise(self, s: Session, cands: list[Cand]) -> list[Hit]:
        """Hits for candidates, in their order; those whose row is gone are left out."""
        rows = load_rows(s, [c.item_id for c in cands])
        return [make_hit(*rows[c.item_id], c.score, cosine=c.cosine, calibrated=c.calibrated, words=c.words)
                for c in cands if c.item_id in rows]

    def _allowed_ids(self, s: Session, filters: Filters | None, modality: str | None) -> np.ndarray | None:
        """The ids of the items that pass the filters (and the index holds), kept per index version."""
        vecs = self.store.vectors()
        if filters is None:
            return None
        if vecs is not None:
            self._follow(vecs)
        key = (filters, modality, get_meta(s, "tags_version", 0) if filters.tags else 0,
               get_meta(s, "people_version", 0) if filters.persons else 0)
        ids = self._allowed.get(key)
        if ids is None:
            ids = matching_ids(s, filters, modality)
            if len(self._allowed) >= 16:
                self._allowed.clear()
            self._allowed[key] = ids
        return ids

    def _vector_cands(self, s: Session, vector: np.ndarray, k: int, modality: str | None,
                      allowed: np.ndarray | None) -> list[Cand]:
        """The k nearest items (of a modality, among `allowed`); several kinds are each searched
        and merged by calibrated score."""
        vecs = self.store.vectors()
        if vecs is None or vecs.ntotal == 0:
            return []
        present = self.present(s, vecs)
        channels = [c for c in present if modality is None or c[0] == modality]
        subsets: list[np.ndarray | None] = []
        for c in channels:
            among = None if len(present) == 1 else self.channel_ids(s, vecs, c)
            if allowed is not None:
                among = np.intersect1d(among if among is not None else vecs.present(allowed), allowed, assume_unique=True)
            subsets.append(among)
        if not channels:
            return []
        if len(channels) == 1:
            sub = subsets[0]
            if sub is not None and len(sub) == 0:
                return []
            D, I = vecs.search_subset(vector.reshape(1, -1), k, sub) if sub is not None else vecs.search(vector.reshape(1, -1), k)
            return [Cand(int(i), float(d), cosine=float(d)) for d, i in zip(D[0], I[0]) if i != -1]
        answers = vecs.search_subsets(vector.reshape(1, -1), k, subsets)  # type: ignore[arg-type]
        found = {c: [(int(i), float(d)) for d, i in zip(D[0], I[0]) if i != -1] for c, (D, I) in zip(channels, answers)}
        calibrated = self.calibrator.calibrate(s, vecs, vector, {c: [d for _, d in f] for c, f in found.items()})
        # kinds mixed: ordered by how far each stands above the query's usual score in its kind
        cands = [Cand(i, z, cosine=d, calibrated=z) for c, f in found.items() for (i, d), z in zip(f, calibrated[c])]
        cands.sort(key=lambda c: c.score, reverse=True)
        return cands[:k]

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
        r = SearchRequest(vector=self.item_vector(item_id), type=modality or (),
                          k=min(MAX_RESULTS, k + info["file_items"])).resolve()
        hits = self.search(r)
        return [h for h in hits if h.path != info["path"]][:k]
