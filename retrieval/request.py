"""One search request, declared once: every option's name, type, help and parsing live on the
fields of `SearchRequest`; the CLI's options (retrieval.cli_request), the HTTP API's parameters
and its OpenAPI schema (retrieval.server.api_request) and the Python client's wire form are made
from these fields, and `resolve` turns a request into what the search runs.

Texts go through the query language (retrieval.querylang): `a red circle type:image after:2020`
is the request `a red circle` with `type=image, after=2020`. A filter given both ways must agree
(a type given both ways keeps the kinds both allow).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from retrieval import querylang
from retrieval.cutoff import MAX_RESULTS, parse_cutoff
from retrieval.errors import UsageError
from retrieval.filters import SORTS, Filters, make_filters
from retrieval.hybrid import DEFAULT_MODE, MODES
from retrieval.query import Query


@dataclass(frozen=True)
class Spec:
    """How one request field is typed, told and parsed outside Python."""

    help: str
    kind: type = str  # of one value: str, int, float or bool
    multiple: bool = False  # a tuple of values (repeatable flag, repeated parameter)
    wire: str | None = None  # the API's name, where the field's is a Python keyword
    flag: str | None = None  # the CLI's, where it is not --name
    short: str | None = None
    metavar: str | None = None
    choices: Callable[[], Sequence[str]] | None = None
    ge: float | None = None
    le: float | None = None
    token: str | None = None  # its key in the query language
    cli: bool = True
    api: bool = True  # a parameter of the API (files come as uploads, vectors never travel)
    files: str | None = None  # the upload field of a file option

    def api_name(self, name: str) -> str:
        return self.wire or name

    def cli_flag(self, name: str) -> str:
        return self.flag or "--" + name.replace("_", "-")


def opt(default: Any, help: str, **spec: Any) -> Any:
    """A request field with its declaration."""
    if spec.get("multiple"):
        return field(default=(), metadata={"spec": Spec(help, **spec)})
    return field(default=default, metadata={"spec": Spec(help, **spec)})


@dataclass(frozen=True)
class SearchRequest:
    """What to search for, where and how; each field is one option of the CLI and the API."""

    # what: texts (the query language applies), library items, files, texts to steer away from
    q: tuple[str, ...] = opt((), "Text to search for (repeatable). The query language applies: "
                             "type:image after:2020 tag:red -word \"exact phrase\".",
                             multiple=True, flag="--text", metavar="TEXT")
    like: tuple[int, ...] = opt((), "Library item ids whose vectors join the query (more like these)",
                                kind=int, multiple=True, cli=False)
    images: tuple[str, ...] = opt((), "Search by this picture (repeatable).", multiple=True, flag="--image",
                                  metavar="FILE", api=False, files="image")
    audios: tuple[str, ...] = opt((), "Search by this sound file (repeatable).", multiple=True, flag="--audio",
                                  metavar="FILE", api=False, files="audio")
    videos: tuple[str, ...] = opt((), "Search by this video: the mean of its shots (repeatable).", multiple=True,
                                  flag="--video", metavar="FILE", api=False, files="video")
    faces: tuple[str, ...] = opt((), "The pictures and video moments of the person whose face is in FILE (a photo "
                                 "not in the library; its largest face), most alike first. With text, or with more "
                                 "faces: their people's files (as --person).", multiple=True, flag="--face",
                                 metavar="FILE", api=False, files="face")
    weight: float | None = opt(None, "Share of the pictures/sounds/items in a query that also has text [default: 0.5]",
                               kind=float, ge=0, le=1)
    negatives: tuple[str, ...] = opt((), "Text to steer away from (repeatable).", multiple=True, wire="not",
                                     flag="--not", metavar="TEXT")
    not_weight: float = opt(0.5, "Strength of the --not terms.", kind=float, ge=0, le=1)
    # which items
    type: tuple[str, ...] = opt((), "Only results of this kind (repeatable: any of them); 'any' mixes them by "
                                "calibrated score.", multiple=True, choices=querylang.kinds, token="type")
    after: str | None = opt(None, "Taken (else modified) on or after DATE: YYYY, YYYY-MM, YYYY-MM-DD[THH:MM].",
                            metavar="DATE", token="after")
    before: str | None = opt(None, "Taken (else modified) before DATE.", metavar="DATE", token="before")
    path: str | None = opt(None, "Only files whose path matches: a folder, '*.png', 'Trips/2023/*' ('a|b': either).",
                           wire="in", flag="--in", metavar="GLOB", token="path")
    camera: str | None = opt(None, "Only pictures from a camera whose make or model contains TEXT ('a|b': either).",
                             metavar="TEXT", token="camera")
    near: str | None = opt(None, "Only files taken within KM kilometres of a place (GPS).", metavar="LAT,LON,KM",
                           token="place")
    min_size: str | None = opt(None, "Only files of at least SIZE (e.g. 500KB).", metavar="SIZE")
    max_size: str | None = opt(None, "Only files of at most SIZE (e.g. 5MB).", metavar="SIZE")
    tag: tuple[str, ...] = opt((), "Only items tagged LABEL by `xmr tag` (repeatable: all of them; 'a|b': either).",
                               multiple=True, metavar="LABEL", token="tag")
    person: tuple[str, ...] = opt((), "Only files in which this person is seen (repeatable: all of them; a name or an "
                                  "id from `xmr people`).", multiple=True, metavar="NAME", token="person")
    # how
    mode: str = opt(DEFAULT_MODE, "hybrid: meaning first, exact words lifting what holds them all; semantic: meaning "
                    "only; words: exact words only (no model needed). A \"quoted phrase\" must occur as written.",
                    choices=lambda: MODES)
    k: int = opt(10, "Number of results.", kind=int, short="-k", ge=1, le=MAX_RESULTS, metavar="N")
    offset: int = opt(0, "Skip this many results: the next page (offset + k up to 10,000).", kind=int, ge=0,
                      le=MAX_RESULTS - 1, metavar="N")
    group: bool = opt(False, "One hit per file (a video's best segments listed under it).", kind=bool)
    sort: str = opt("relevance", "date: the results that stand out (see --cutoff), newest first.", choices=lambda: SORTS)
    cutoff: str | None = opt(None, "auto: stop where results stop standing out for this query; or a minimum cosine.",
                             metavar="auto|SCORE")
    # Python only: a ready unit vector to search by (more like an item)
    vector: Any = opt(None, "A ready unit query vector.", cli=False, api=False)
    names: Any = opt(None, "How query files are named in messages (uploads: the name they were sent by).",
                     cli=False, api=False)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            spec: Spec = f.metadata["spec"]
            if spec.multiple and not isinstance(value, tuple):
                value = (value,) if isinstance(value, (str, int)) else tuple(value or ())
                object.__setattr__(self, f.name, value)
        if self.type and set(self.type) <= {"any"}:
            object.__setattr__(self, "type", ())

    def replace(self, **changes: Any) -> "SearchRequest":
        return dataclasses.replace(self, **changes)

    def to_wire(self) -> dict[str, Any]:
        """The API's parameters for this request (what differs from the defaults)."""
        out: dict[str, Any] = {}
        for f, spec in specs():
            value = getattr(self, f.name)
            if spec.api and value != f.default:
                out[spec.api_name(f.name)] = list(value) if spec.multiple else value
        return out

    @classmethod
    def from_wire(cls, params: dict[str, Any], **python: Any) -> "SearchRequest":
        """A request from the API's parameters (by their wire names) and Python-only fields."""
        names = {spec.api_name(f.name): f.name for f, spec in specs() if spec.api}
        return cls(**{names[key]: value for key, value in params.items() if key in names and value is not None}, **python)

    def resolve(self) -> "Resolved":
        """The texts' query language applied, every option checked: what the search runs. UsageError
        when something is wrong (before any model loads)."""
        parsed = querylang.parse_texts(self.q)
        r = querylang.merge(self, parsed.fields)
        types = tuple(t for t in r.type if t != "any")
        for t in types:
            if t not in querylang.kinds():
                raise UsageError(f"unknown type {t!r}; choose from: {', '.join(querylang.kinds())}")
        if r.mode not in MODES:
            raise UsageError(f"unknown mode {r.mode!r}; choose from: {', '.join(MODES)}")
        if r.sort not in SORTS:
            raise UsageError(f"unknown sort {r.sort!r}; choose from: {', '.join(SORTS)}")
        if r.k < 1:
            raise UsageError(f"k must be positive, got {r.k}")
        if r.offset < 0 or r.offset + r.k > MAX_RESULTS:
            raise UsageError(f"offset + k may be at most {MAX_RESULTS:,}, got {r.offset + r.k:,}")
        filters = make_filters(after=r.after, before=r.before, path=r.path, camera=r.camera, near=r.near,
                               min_size=r.min_size, max_size=r.max_size, tags=r.tag, persons=r.person,
                               types=types if len(types) > 1 else (), exclude=parsed.exclude)
        query = None
        by_face_alone = bool(r.faces) and not (parsed.texts or r.images or r.audios or r.videos or r.like)
        if r.vector is None and not by_face_alone:
            query = Query(texts=list(parsed.texts), images=list(r.images), audios=list(r.audios), videos=list(r.videos),
                          negatives=[*r.negatives, *parsed.negatives], media_weight=r.weight,
                          negative_weight=r.not_weight, names=dict(r.names or {}))
        if query is not None:  # nothing to search for, a bad weight, a missing file (liked items count as media)
            dataclasses.replace(query, vectors=[*query.vectors, *r.like]).validate()
        return Resolved(query=query, vector=r.vector, like=r.like, filters=filters, faces=r.faces,
                        modality=types[0] if len(types) == 1 else None, k=r.k, offset=r.offset, group=r.group,
                        mode=r.mode, sort=r.sort, cutoff=parse_cutoff(r.cutoff), tokens=parsed.tokens)


@dataclass(frozen=True)
class Resolved:
    """A request as the searcher runs it: the meaning (a Query, or a ready vector), the filters
    (retrieval.filters), one kind or any, and how the list is made."""

    query: Query | None
    vector: Any
    filters: Filters
    modality: str | None
    k: int = 10
    offset: int = 0
    group: bool = False
    mode: str = DEFAULT_MODE
    sort: str = "relevance"
    cutoff: str | float | None = None
    like: tuple[int, ...] = ()
    faces: tuple[str, ...] = ()  # photos whose (largest) face is searched for (retrieval.face_search)
    tokens: tuple[Any, ...] = ()  # the query language's filters, as typed (the page shows them as chips)


def specs() -> Iterator[tuple[dataclasses.Field[Any], Spec]]:
    """Each request field with its declaration, in order."""
    for f in dataclasses.fields(SearchRequest):
        yield f, f.metadata["spec"]


def request_of(query: "SearchRequest | Query | str | None", fields: dict[str, Any]) -> SearchRequest:
    """A SearchRequest from what Library.search takes: a request, a text, or a Query (its parts
    become the request's), with fields on top."""
    if isinstance(query, SearchRequest):
        return query.replace(**fields) if fields else query
    if isinstance(query, Query):
        fields = {"q": tuple(query.texts), "images": tuple(query.images), "audios": tuple(query.audios),
                  "videos": tuple(query.videos), "negatives": tuple(query.negatives), "weight": query.media_weight,
                  "not_weight": query.negative_weight, **fields}
    elif isinstance(query, str):
        fields = {"q": (query,), **fields}
    return SearchRequest(**fields)
