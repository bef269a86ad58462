"""The full-text index: the words of every item that has some (text chunks, document pages, the
words read off a picture, what was said in a recording), for exact-word search beside meaning.

An item's words are its `snippet`. The index is a table of the catalog, written in the same
session as the item rows (`add` when they are written, `delete` when they are dropped), so a
commit holds rows and words together and a crash loses neither alone.

- SQLite: an FTS5 table `item_words` (rowid = item id), Porter stemming over unicode61 tokens,
  ranked by FTS5's BM25.
- PostgreSQL: a table `item_words` with a generated `tsvector` (english configuration) under a
  GIN index, ranked by `ts_rank_cd`.

Queries are words and "quoted phrases": a phrase must occur as written (after stemming). Words
are either all required (`every`) or alternatives that rank a passage higher the more of them,
and the rarer, it holds (retrieval.hybrid says which search uses which).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

TABLE = "item_words"
_CHUNK = 500
MAX_LIMIT = 1 << 31  # a LIMIT databases take (k itself may be any positive integer)
_PHRASE_OR_WORD = re.compile(r'"([^"]*)"|(\S+)')
_TOKEN = re.compile(r"\w+", re.UNICODE)
# Words so common that matching them says nothing of what a passage is about; left out of the
# loose words of a query (not of phrases), the way search engines' English analyzers do.
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have he her his i if in into is it its me my no not of on or "
    "our she so than that the their them then there these they this to was we were what when where which "
    "who whom why will with you your".split()
)


@dataclass(frozen=True)
class WordQuery:
    """A query's loose words, its quoted phrases and its compound words (each a tuple of parts)."""

    words: tuple[str, ...]
    phrases: tuple[tuple[str, ...], ...]  # quoted: required
    compounds: tuple[tuple[str, ...], ...] = ()  # a word of several parts (E-7634): an alternative, as a phrase

    @property
    def empty(self) -> bool:
        return not self.words and not self.phrases and not self.compounds

    @property
    def exact(self) -> bool:
        """Whether it names something only exact words find: a code (E-7634), a number, a
        quoted phrase."""
        return bool(self.compounds or self.phrases or any(any(ch.isdigit() for ch in w) for w in self.words))


def exact_part(q: WordQuery) -> WordQuery:
    """What only exact words find in a query: its codes, its numbers and its phrases."""
    return WordQuery(tuple(w for w in q.words if any(ch.isdigit() for ch in w)), q.phrases, q.compounds)


def parse(query: str) -> WordQuery:
    """Loose words (stopwords dropped, each once), quoted phrases and compound words of a query
    (a code like E-7634 is tokenized into parts, which must then be adjacent, as a phrase: its
    parts alone would match every E-something). An unclosed quote counts as a plain character."""
    words: list[str] = []
    phrases: list[tuple[str, ...]] = []
    loose: list[tuple[str, ...]] = []
    if query.count('"') % 2:
        query = query.replace('"', " ")
    for m in _PHRASE_OR_WORD.finditer(query):
        if m.group(1) is not None:
            tokens = tuple(_TOKEN.findall(m.group(1)))
            if tokens:
                phrases.append(tokens)
        else:
            tokens = _TOKEN.findall(m.group(2))
            if len(tokens) > 1:  # "E-7634", "v2.1.0", "o'brien": one term, its parts in order
                loose.append(tuple(tokens))
            for t in tokens[:1] if len(tokens) == 1 else ():
                if t.lower() not in STOPWORDS and t.lower() not in (w.lower() for w in words):
                    words.append(t)
    return WordQuery(tuple(words), tuple(phrases), tuple(loose))


def _fts5_match(q: WordQuery, every: bool = False) -> str:
    """FTS5 query: every phrase required, ranked over phrases and loose words together; with
    `every`, every word required too."""
    def quote(tokens: Iterable[str]) -> str:
        return '"' + " ".join(tokens).replace('"', '""') + '"'

    if every:
        return " AND ".join([quote(p) for p in (*q.phrases, *q.compounds)] + [quote([w]) for w in q.words])
    alternatives = " OR ".join([quote(p) for p in (*q.phrases, *q.compounds)] + [quote([w]) for w in q.words])
    if not q.phrases:
        return alternatives
    required = " AND ".join(quote(p) for p in q.phrases)
    return f"({required}) AND ({alternatives})"


def _websearch(q: WordQuery, every: bool = False) -> tuple[str, str]:
    """PostgreSQL: (required phrases, alternatives) as websearch_to_tsquery texts; with `every`,
    every word is required (websearch's default: words side by side)."""
    required = " ".join(f'"{" ".join(p)}"' for p in q.phrases)
    joiner = " " if every else " or "
    alternatives = joiner.join([f'"{" ".join(p)}"' for p in (*q.phrases, *q.compounds)] + list(q.words))
    return required, alternatives


def create(conn: Connection | Session) -> None:
    """Create the full-text table (and its index) if it is not there."""
    if _dialect(conn) == "postgresql":
        conn.execute(text(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (item_id BIGINT PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE, "
            "body TEXT NOT NULL, tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED)"))
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_tsv ON {TABLE} USING GIN (tsv)"))
    else:
        conn.execute(text(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5(body, tokenize='porter unicode61 remove_diacritics 2')"))


def drop(conn: Connection | Session) -> None:
    """Remove the full-text table (a failed first command's catalog is removed whole)."""
    conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))


def _dialect(conn: Connection | Session) -> str:
    return conn.get_bind().dialect.name if isinstance(conn, Session) else conn.dialect.name


def _id_column(conn: Connection | Session) -> str:
    return "item_id" if _dialect(conn) == "postgresql" else "rowid"


def add(session: Session | Connection, rows: Sequence[tuple[int, str]]) -> None:
    """Index the words of items: (item id, text) pairs; empty texts are left out."""
    rows = [(int(i), t) for i, t in rows if t and t.strip()]
    if rows:
        col = _id_column(session)
        session.execute(text(f"INSERT INTO {TABLE} ({col}, body) VALUES (:id, :body)"),
                        [{"id": i, "body": t} for i, t in rows])


def delete(session: Session | Connection, item_ids: Sequence[int]) -> None:
    """Forget the words of items (before or with their rows)."""
    col = _id_column(session)
    ids = [int(i) for i in item_ids]
    for i in range(0, len(ids), _CHUNK):
        part = ids[i : i + _CHUNK]
        session.execute(text(f"DELETE FROM {TABLE} WHERE {col} IN ({','.join(map(str, part))})"))


def indexed_ids(session: Session | Connection) -> set[int]:
    """The items the full-text index holds words for."""
    return {int(i) for (i,) in session.execute(text(f"SELECT {_id_column(session)} FROM {TABLE}"))}


def rebuild(session: Session | Connection) -> int:
    """Re-make the index from the items' snippets; returns the entries written."""
    session.execute(text(f"DELETE FROM {TABLE}"))
    rows = [(i, s) for i, s in session.execute(text("SELECT id, snippet FROM items WHERE snippet IS NOT NULL"))]
    add(session, rows)
    return sum(1 for _, s in rows if s and s.strip())


def expected_ids(session: Session | Connection) -> set[int]:
    """The items that should have words: those with a non-blank snippet."""
    rows = session.execute(text("SELECT id, snippet FROM items WHERE snippet IS NOT NULL"))
    return {int(i) for i, s in rows if s.strip()}


def search(session: Session | Connection, query: WordQuery, k: int, modality: str | None = None,
           every: bool = False) -> list[tuple[int, float]]:
    """The k best matching items, best first, as (item id, relevance: higher is better). With
    `every`, only items holding every word of the query; otherwise any word (phrases always)."""
    if query.empty or k <= 0:
        return []
    params: dict[str, Any] = {"k": min(int(k), MAX_LIMIT)}
    where_modality = ""
    if modality is not None:
        params["modality"] = modality
        where_modality = " AND items.modality = :modality"
    if _dialect(session) == "postgresql":
        required, alternatives = _websearch(query, every)
        params.update(required=required, alternatives=alternatives)
        need = " AND w.tsv @@ websearch_to_tsquery('english', :required)" if query.phrases else ""
        sql = (f"SELECT w.item_id, ts_rank_cd(w.tsv, q) AS r FROM {TABLE} w "
               "JOIN items ON items.id = w.item_id, websearch_to_tsquery('english', :alternatives) q "
               f"WHERE w.tsv @@ q{need}{where_modality} ORDER BY r DESC, w.item_id LIMIT :k")
    else:
        params["match"] = _fts5_match(query, every)
        # bm25() is lower for better matches: negated, higher is better like Postgres' rank.
        sql = (f"SELECT {TABLE}.rowid, -bm25({TABLE}) AS r FROM {TABLE} JOIN items ON items.id = {TABLE}.rowid "
               f"WHERE {TABLE} MATCH :match{where_modality} ORDER BY bm25({TABLE}), {TABLE}.rowid LIMIT :k")
    return [(int(i), float(r)) for i, r in session.execute(text(sql), params)]


def _any_of(session: Session | Connection, terms: Sequence[tuple[str, ...]]) -> tuple[str, str]:
    """(the WHERE clause, its query text) matching items that hold any of `terms` (each a word or
    the parts of a phrase), in the dialect's own query syntax (the search's builders)."""
    q = WordQuery((), (), tuple(terms))  # alternatives, none required
    if _dialect(session) == "postgresql":
        return "tsv @@ websearch_to_tsquery('english', :q)", _websearch(q)[1]
    return f"{TABLE} MATCH :q", _fts5_match(q)


def holding_any(session: Session | Connection, terms: Sequence[str]) -> set[int]:
    """The ids of the items whose words hold any of `terms` (each a word or a phrase, matched as
    the search matches them: stemmed, any case)."""
    parts = [p for p in (tuple(_TOKEN.findall(t)) for t in terms) if p]
    if not parts:
        return set()
    where, query = _any_of(session, parts)
    return {int(i) for (i,) in session.execute(text(f"SELECT {_id_column(session)} FROM {TABLE} WHERE {where}"),
                                               {"q": query})}


def held_by(session: Session | Connection, query: WordQuery, cap: int = 10_000) -> int:
    """How many items hold the query's commonest word (up to `cap`): how common its words are."""
    most = 0
    for term in [(w,) for w in query.words] + list(query.compounds):
        where, q = _any_of(session, [term])
        sql = f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} WHERE {where} LIMIT :cap) t"
        most = max(most, int(session.execute(text(sql), {"q": q, "cap": cap}).scalar() or 0))
    return most
