"""Filters on what a file says about itself (dates, path, camera, place, size) and on tags:
parsed from what a person types, turned into the set of items a search may return.

The set is computed in SQL once per filter and index version (kept for the next pages);
search then ranks only its members (indexer.subsets: FAISS's ID selector or an exact search
for a selective filter, a deeper unfiltered search kept to the members for a loose one), so a
filtered search returns exactly k hits whenever k items pass.

Dates: a file's date is its EXIF date taken, else its modification time. `after` is inclusive,
`before` exclusive; a date without a time is midnight local time ("--before 2024" = taken
before 2024 began).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from retrieval.errors import UsageError

EARTH_KM = 6371.0088
SORTS = ("relevance", "date")


@dataclass(frozen=True)
class Filters:
    after: float | None = None  # epoch seconds, inclusive
    before: float | None = None  # exclusive
    path: str | None = None  # a glob (see `path_patterns`)
    camera: str | None = None  # part of the camera's make or model, any case
    near: tuple[float, float, float] | None = None  # latitude, longitude, kilometres
    min_size: int | None = None  # bytes
    max_size: int | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)  # every one of them ("a|b": either)
    persons: tuple[str, ...] = field(default_factory=tuple)  # people (names or ids) seen in the file, all of them
    types: tuple[str, ...] = field(default_factory=tuple)  # any of these kinds (one kind is searched as such)
    exclude: tuple[str, ...] = field(default_factory=tuple)  # words or phrases no hit's words may hold

    @property
    def empty(self) -> bool:
        return self == Filters()

    def to_dict(self) -> dict[str, Any]:
        """As the API and `--json` echo them (dates as ISO text)."""
        out: dict[str, Any] = {}
        for name in ("after", "before"):
            value = getattr(self, name)
            if value is not None:
                out[name] = datetime.fromtimestamp(value).isoformat()
        for name in ("path", "camera", "near", "min_size", "max_size"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for name in ("tags", "persons", "types", "exclude"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        return out


def parse_date(text: str, flag: str = "--after") -> float:
    """'2024', '2024-05', '2024-05-01', '2024-05-01T10:30[:00]' (local time) or with an offset."""
    t = text.strip()
    for fmt in ("%Y", "%Y-%m", "%Y-%m-%d"):
        try:
            return datetime.strptime(t, fmt).timestamp()
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise UsageError(f"{flag}: not a date: {text!r} (use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None


def parse_near(text: str) -> tuple[float, float, float]:
    """'LAT,LON,KM' -> (lat, lon, km), checked."""
    parts = [p.strip() for p in text.split(",")]
    try:
        lat, lon, km = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--near: expected LAT,LON,KM (e.g. 48.8566,2.3522,10), got {text!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not (0 < km <= 20_100) or not all(map(math.isfinite, (lat, lon, km))):
        raise UsageError(f"--near: latitude -90..90, longitude -180..180 and a distance above 0 km, got {text!r}")
    return lat, lon, km


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
          "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def parse_size(text: str, flag: str = "--min-size") -> int:
    """'500', '200KB', '1.5 MB', '2G' (binary units) -> bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise UsageError(f"{flag}: not a size: {text!r} (e.g. 500KB, 2MB, 1GB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass(frozen=True)
class FilterText:
    """Filters as typed on the command line or sent to the API (retrieval.request's fields)."""

    after: str | None = None
    before: str | None = None
    path: str | None = None
    camera: str | None = None
    near: str | None = None
    min_size: str | int | None = None
    max_size: str | int | None = None
    tags: Sequence[str] = ()
    persons: Sequence[str] = ()
    types: Sequence[str] = ()
    exclude: Sequence[str] = ()

    def parse(self) -> Filters:
        """The Filters they mean; UsageError when one is wrong. `path`, `camera` and each tag
        may name alternatives: "a|b" is either."""
        f = Filters(
            after=parse_date(self.after, "--after") if self.after else None,
            before=parse_date(self.before, "--before") if self.before else None,
            path=self.path.strip() or None if self.path else None,
            camera=self.camera.strip() or None if self.camera else None,
            near=parse_near(self.near) if self.near else None,
            min_size=_size(self.min_size, "--min-size"),
            max_size=_size(self.max_size, "--max-size"),
            tags=tuple(t.strip() for t in self.tags if t and t.strip()),
            persons=tuple(p.strip() for p in self.persons if p and p.strip()),
            types=tuple(self.types),
            exclude=tuple(t.strip() for t in self.exclude if t.strip()),
        )
        if f.after is not None and f.before is not None and f.after >= f.before:
            raise UsageError("--after must be earlier than --before")
        if f.min_size is not None and f.max_size is not None and f.min_size > f.max_size:
            raise UsageError("--min-size must not be above --max-size")
        return f


def _size(value: str | int | None, flag: str) -> int | None:
    return value if isinstance(value, int) else (parse_size(value, flag) if value else None)


def make_filters(**text: Any) -> Filters:
    """Filters from text as typed on the command line or sent to the API (FilterText's fields);
    UsageError when wrong."""
    return FilterText(**text).parse()


def _like(glob: str) -> str:
    """A glob as a LIKE pattern (escape character '\\'): * and ** any run, ? one character."""
    out = []
    for ch in glob:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            if not out or out[-1] != "%":
                out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def path_patterns(glob: str) -> list[str]:
    """LIKE patterns for `--in GLOB`: a glob matches a file's whole path, or a folder and all
    below it; a relative glob ("Holidays/2023", "*.png") matches from any folder down
    ("./x" and "~/x" are made absolute first)."""
    g = glob.strip()
    if g.startswith(("./", "../", "~")) or g in (".", ".."):
        g = os.path.abspath(os.path.expanduser(g))
    g = g.rstrip("/") or "/"
    base = _like(g)
    if not g.startswith(("/", "*")) and not re.match(r"^[A-Za-z]:[\\/]", g):
        base = "%/" + base
    return [base, base + "/%"]


def distance_km(lat: Any, lon: Any, lat0: float, lon0: float) -> Any:
    """Great-circle distance (haversine), vectorised over numpy arrays."""
    import numpy as np

    p1, p2 = np.radians(lat), math.radians(lat0)
    dlat, dlon = p1 - p2, np.radians(lon) - math.radians(lon0)
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * math.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def matching_ids(session: Any, f: Filters, modality: str | None = None) -> Any:
    """The ids (sorted int64) of the items that pass `f`, of one modality or all."""
    import numpy as np
    from sqlalchemy import and_, func, or_, select, true

    from indexer.catalog import File, Item, Tag

    date = func.coalesce(File.taken_at, File.mtime_ns / 1e9)
    cond: list[Any] = []
    if modality is not None:
        cond.append(Item.modality == modality)
    if f.after is not None:
        cond.append(date >= f.after)
    if f.before is not None:
        cond.append(date < f.before)
    if f.types:
        cond.append(Item.modality.in_(f.types))
    if f.path:
        cond.append(or_(*(File.path.ilike(p, escape="\\") for glob in either(f.path) for p in path_patterns(glob))))
    if f.camera:
        cond.append(or_(*(_camera(name) for name in either(f.camera))))
    if f.min_size is not None:
        cond.append(File.size >= f.min_size)
    if f.max_size is not None:
        cond.append(File.size <= f.max_size)
    for t in f.tags:
        cond.append(Item.id.in_(select(Tag.item_id).where(Tag.label.in_(either(t)))))
    if f.persons:
        from indexer.people_store import seen_with

        cond += seen_with(session, f.persons)
    if f.near is None:
        stmt = select(Item.id).join(File).where(and_(true(), *cond)).order_by(Item.id)
        return _without_words(session, f, np.fromiter(session.scalars(stmt), np.int64))
    lat0, lon0, km = f.near
    # a box around the circle in SQL (an index can use it), the exact distance here
    dlat = math.degrees(km / EARTH_KM)
    cond += [File.lat.is_not(None), File.lat.between(lat0 - dlat, lat0 + dlat)]
    coslat = math.cos(math.radians(lat0))
    if coslat > 1e-6 and dlat / coslat < 180 and abs(lat0) + dlat < 90:
        dlon = dlat / coslat
        lo, hi = lon0 - dlon, lon0 + dlon
        if lo >= -180 and hi <= 180:
            cond.append(File.lon.between(lo, hi))
        else:  # the box crosses the antimeridian
            cond.append(or_(File.lon >= (lo + 360 if lo < -180 else lo), File.lon <= (hi - 360 if hi > 180 else hi)))
    rows = session.execute(select(Item.id, File.lat, File.lon).join(File).where(and_(*cond)).order_by(Item.id)).all()
    if not rows:
        return np.zeros(0, np.int64)
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    lat = np.fromiter((r[1] for r in rows), np.float64, len(rows))
    lon = np.fromiter((r[2] for r in rows), np.float64, len(rows))
    return _without_words(session, f, ids[distance_km(lat, lon, lat0, lon0) <= km])


def either(value: str) -> list[str]:
    """The alternatives of a filter value ("a|b": either)."""
    return [v.strip() for v in value.split("|") if v.strip()] or [value]


def _camera(name: str) -> Any:
    from sqlalchemy import func, or_

    from indexer.catalog import File

    needle = f"%{_like(name.lower())}%"
    return or_(func.lower(File.camera_make).like(needle, escape="\\"),
               func.lower(File.camera_model).like(needle, escape="\\"),
               func.lower(func.coalesce(File.camera_make, "") + " " + func.coalesce(File.camera_model, ""))
               .like(needle, escape="\\"))


def _without_words(session: Any, f: Filters, ids: Any) -> Any:
    """`ids` less the items whose words hold an excluded word or phrase."""
    import numpy as np

    from indexer import words

    if not f.exclude or not len(ids):
        return ids
    held = np.asarray(sorted(words.holding_any(session, f.exclude)), np.int64)
    return np.setdiff1d(ids, held, assume_unique=True)


def file_date(taken_at: float | None, mtime_ns: int) -> float:
    """The date a file is filtered and sorted by: when it was taken, else last modified."""
    return taken_at if taken_at is not None else mtime_ns / 1e9
