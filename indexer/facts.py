"""What a file says about itself, read at index time for filters and the page: when a photo was
taken (EXIF), with which camera, where (GPS), its pixel size; a sound's or video's duration.

Reading facts never skips a file: a picture with broken EXIF is still indexed, with the facts
that could be read. Dates are stored as epoch seconds; an EXIF date without a time zone is read
as local time, the way `--after`/`--before` dates are.
"""

from __future__ import annotations

import math
import warnings
from datetime import datetime, timedelta, timezone
from typing import Any

FACT_FIELDS = ("taken_at", "camera_make", "camera_model", "lat", "lon", "width", "height", "duration")
# Bump when facts are read differently: files whose facts are older are read again (not re-embedded).
FACTS_VERSION = 1

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL, _DATETIME, EXIF_ORIENTATION = 0x010F, 0x0110, 0x0132, 0x0112
_DATE_ORIGINAL, _DATE_DIGITIZED, _OFFSET_ORIGINAL = 0x9003, 0x9004, 0x9011


def parse_exif_date(value: Any, offset: Any = None) -> float | None:
    """EXIF "YYYY:MM:DD HH:MM:SS" (+ "+HH:MM" offset) as epoch seconds; None when unreadable
    (blank dates "0000:00:00 00:00:00" are common)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.strptime(value.strip().rstrip("\x00")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    if isinstance(offset, str) and len(offset.strip()) >= 6:
        try:
            sign = -1 if offset.strip()[0] == "-" else 1
            hours, minutes = offset.strip()[1:6].split(":")
            tz = timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))
            return when.replace(tzinfo=tz).timestamp()
        except (ValueError, IndexError):
            pass
    try:
        return when.timestamp()  # local time
    except (OverflowError, OSError, ValueError):
        return None


def _degrees(value: Any, ref: Any) -> float | None:
    """A GPS coordinate (degrees, minutes, seconds as rationals) with its N/S/E/W reference."""
    try:
        d, m, s = (float(x) for x in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    out = d + m / 60 + s / 3600
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "ignore")
    if isinstance(ref, str) and ref.strip().upper()[:1] in ("S", "W"):
        out = -out
    return out if math.isfinite(out) else None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "ignore")
    if not isinstance(value, str):
        return None
    value = value.strip().strip("\x00").strip()
    return value[:120] or None


def image_facts(path: str) -> dict[str, Any]:
    """Pixel size (as shown, after EXIF rotation), date taken, camera and place of a picture;
    only the header is read."""
    from PIL import Image

    out: dict[str, Any] = {}
    with warnings.catch_warnings(), Image.open(path) as im:
        warnings.simplefilter("ignore")  # "Corrupt EXIF data": what could be read is used, the rest left out
        width, height = im.size
        exif = im.getexif()
        sub, gps = exif.get_ifd(_EXIF_IFD), exif.get_ifd(_GPS_IFD)
    if exif.get(EXIF_ORIENTATION) in (5, 6, 7, 8):  # turned a quarter: shown the other way round
        width, height = height, width
    out["width"], out["height"] = int(width), int(height)
    taken = parse_exif_date(sub.get(_DATE_ORIGINAL), sub.get(_OFFSET_ORIGINAL))
    if taken is None:
        taken = parse_exif_date(sub.get(_DATE_DIGITIZED)) or parse_exif_date(exif.get(_DATETIME))
    out["taken_at"] = taken
    out["camera_make"], out["camera_model"] = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    lat, lon = _degrees(gps.get(2), gps.get(1)), _degrees(gps.get(4), gps.get(3))
    if lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180 and (lat, lon) != (0.0, 0.0):
        out["lat"], out["lon"] = lat, lon
    return out
