"""The query language of the search box and of `xmr search`'s texts: filters typed among the words.

    a red circle type:image after:2020-01-01      meaning "a red circle", pictures from 2020 on
    beach tag:holiday OR tag:summer -crowd        either tag; nothing whose words hold "crowd"
    "error 4471" size:>2MB path:Documents         the exact phrase, files over 2 MB under Documents

Keys: after: before: type: tag: person: camera: place: (LAT,LON,KM) path: size: (>2MB, <5MB, 1MB..5MB);
a value with spaces is quoted (camera:"Pixel 7"). `OR` between two values of one of type, tag,
camera, path means either. `-word` and `-"a phrase"`: no item whose words hold it, and the meaning
steered away from it (as --not). `"a phrase"` stays in the text: the words must hold it as written.
Everything else is the meaning. A key this language does not know (`http://…`, `re:`) is text; a
known key with a bad value is a UsageError that names the token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from retrieval.errors import UsageError
from retrieval.filters import parse_date, parse_near, parse_size

KEYS = ("after", "before", "type", "tag", "person", "camera", "place", "path", "size")
EITHER = ("type", "tag", "camera", "path")  # OR joins their values
FIELD_OF = {"place": "near"}  # the request field a key fills (the rest: the same name; size: two fields)
ALTERNATIVES = "|"  # how either-values travel in one request field ("red|blue")

_PART = re.compile(
    r'(?P<neg>-)?(?P<key>[A-Za-z_]+):(?:"(?P<qv>[^"]*)"|(?P<v>[^\s"]*))'
    r'|(?P<nphrase>-"[^"]*")|(?P<phrase>"[^"]*")|(?P<nword>-[^\W\d]\S*)|(?P<plain>\S+)'
)
_SIZE = re.compile(r"(>=|<=|>|<)?\s*([^.<>=]+?)(?:\.\.([^.<>=]+))?")


def kinds() -> tuple[str, ...]:
    """What `type` takes: 'any' and the kinds registered now (indexer.kinds)."""
    from indexer.kinds import kind_names

    return ("any", *kind_names())


@dataclass(frozen=True)
class Token:
    """A filter as typed: its text (to remove it again), its key and its value."""

    text: str
    key: str
    value: str

    def to_dict(self) -> dict[str, str]:
        return {"text": self.text, "key": self.key, "value": self.value}


@dataclass
class Parsed:
    texts: list[str] = field(default_factory=list)  # the meaning (and words) of each text
    negatives: list[str] = field(default_factory=list)  # -word / -"phrase": steered away from
    exclude: list[str] = field(default_factory=list)  # ... and never in a hit's words
    fields: dict[str, Any] = field(default_factory=dict)  # request fields the filters fill
    tokens: tuple[Token, ...] = ()


def _check(token: Token) -> None:
    """A token's value, checked as its option checks it (the message names the token)."""
    key, value = token.key, token.value
    if not value:
        raise UsageError(f"{token.text!r}: {key}: needs a value")
    where = repr(token.text)
    if key in ("after", "before"):
        parse_date(value, where)
    elif key == "place":
        try:
            parse_near(value)
        except UsageError:
            _fail(token, "LAT,LON,KM (e.g. place:48.85,2.35,10)")
    elif key == "size":
        _size_bounds(token)
    elif key == "type":
        if value not in kinds():
            _fail(token, "one of " + ", ".join(kinds()))


def _fail(token: Token, expected: str) -> None:
    raise UsageError(f"{token.text!r}: {token.key}: expected {expected}")


def _size_bounds(token: Token) -> dict[str, str]:
    """size:>2MB / <5MB / >=1MB / 1MB..5MB -> min_size/max_size."""
    m = _SIZE.fullmatch(token.value.strip())
    if not m or (m.group(1) and m.group(3)) or not (m.group(1) or m.group(3)):
        _fail(token, ">SIZE, <SIZE or SIZE..SIZE (e.g. size:>2MB)")
    assert m is not None
    op, low, high = m.group(1), m.group(2).strip(), (m.group(3) or "").strip()
    for v in (low, high):
        if v:
            parse_size(v, repr(token.text))
    if high:
        return {"min_size": low, "max_size": high}
    return {"min_size": low} if op.startswith(">") else {"max_size": low}


def _fields(token: Token) -> dict[str, Any]:
    if token.key == "size":
        return _size_bounds(token)
    if token.key == "type":
        return {"type": tuple(token.value.split(ALTERNATIVES))}
    if token.key in ("tag", "person"):
        return {token.key: (token.value,)}
    return {FIELD_OF.get(token.key, token.key): token.value}


def parse(text: str) -> Parsed:
    """One text: its filters, its exclusions and the rest (the meaning)."""
    out = Parsed()
    plain: list[str] = []
    tokens: list[Token] = []
    parts = list(_PART.finditer(text))
    skip = set()
    for i, m in enumerate(parts):
        if i in skip:
            continue
        raw = m.group(0)
        key = (m.group("key") or "").lower()
        if key in KEYS:
            if m.group("neg"):
                raise UsageError(f"{raw!r}: a filter cannot be negated (use another value or drop it)")
            value = m.group("qv") if m.group("qv") is not None else m.group("v")
            token = Token(raw, key, value.strip())
            _check(token)
            # OR: this filter's next values
            while i + 2 < len(parts) and parts[i + 1].group(0) == "OR":
                nxt = parts[i + 2]
                nkey = (nxt.group("key") or "").lower()
                if nkey != key or nxt.group("neg"):
                    raise UsageError(f"{raw} OR {nxt.group(0)}: OR joins two values of one filter "
                                     f"({', '.join(k + ':' for k in EITHER)})")
                if key not in EITHER:
                    raise UsageError(f"{raw} OR {nxt.group(0)}: {key}: takes one value")
                other = Token(nxt.group(0), key, (nxt.group("qv") if nxt.group("qv") is not None else nxt.group("v")).strip())
                _check(other)
                token = Token(f"{token.text} OR {other.text}", key, f"{token.value}{ALTERNATIVES}{other.value}")
                skip |= {i + 1, i + 2}
                i += 2
            tokens.append(token)
        elif m.group("nphrase") or m.group("nword"):
            term = raw[1:].strip('"').strip()
            if term:
                out.exclude.append(term)
                out.negatives.append(term)
                tokens.append(Token(raw, "not", term))  # shown as a chip; no request field of its own
        else:
            plain.append(raw)
    for t in tokens:
        if t.key != "not":
            out.fields = combine(out.fields, _fields(t), t.text)
    # a blank text stays (the query says "empty text"); one of filters only has no meaning to add
    out.texts = [" ".join(plain)] if plain else ([text] if not text.strip() else [])
    out.tokens = tuple(tokens)
    return out


def parse_texts(texts: Sequence[str]) -> Parsed:
    """Each text parsed; their filters together (as if typed in one)."""
    out = Parsed()
    for text in texts:
        p = parse(text)
        out.texts += p.texts
        out.negatives += p.negatives
        out.exclude += p.exclude
        out.fields = combine(out.fields, p.fields, text)
        out.tokens += p.tokens
    return out


def combine(have: dict[str, Any], new: dict[str, Any], where: str) -> dict[str, Any]:
    """Filters given twice: kinds both allow, every tag, else the same value or a UsageError."""
    out = dict(have)
    for name, value in new.items():
        old = out.get(name)
        if old in (None, ()) or old == value:
            out[name] = value
        elif name == "type":
            both = tuple(t for t in old if t in value)
            if not both:
                raise UsageError(f"{where}: type {'|'.join(value)} and type {'|'.join(old)} leave no kind")
            out[name] = both
        elif name in ("tag", "person"):
            out[name] = (*old, *value)
        else:
            raise UsageError(f"{where}: {name} given twice ({old!r} and {value!r})")
    return out


def merge(request: Any, fields: dict[str, Any]) -> Any:
    """The request with the filters its texts typed (checked against its own)."""
    mine = {name: getattr(request, name) for name in fields}
    merged = combine({k: v for k, v in mine.items() if v not in (None, ())}, fields, "the query and the options")
    return request.replace(**merged) if merged else request
