"""The SQL side of a filtered search: how long the set of items that pass a filter takes to
compute on a catalog of N files (retrieval.filters.matching_ids), once per filter (a server
keeps it for the next queries and pages while the index is the same).

    python scripts/bench_filters.py [--n 1000000]

Builds a temporary SQLite catalog of N pictures (one item each) with dates spread over 10
years, three cameras, a third with GPS places, sizes 100 KB-10 MB, and 1 % tagged; prints JSON:
seconds per filter and how many items passed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retrieval.filters import make_filters, matching_ids  # noqa: E402

FILTERS = {
    "one_day": {"after": "2020-06-01", "before": "2020-06-02"},
    "one_month": {"after": "2020-06", "before": "2020-07"},
    "one_year": {"after": "2020", "before": "2021"},
    "half": {"after": "2019-01-01"},
    "camera": {"camera": "nikon"},
    "near_10km": {"near": "48.8566,2.3522,10"},
    "folder": {"path": "photos/2021"},
    "size": {"min_size": "5MB"},
    "tag": {"tags": ["dog"]},
    "year_and_camera": {"after": "2020", "before": "2021", "camera": "iphone"},
}


def build(url: str, n: int) -> None:
    from datetime import datetime

    import numpy as np
    from sqlalchemy import insert

    from indexer.catalog import File, Item, Tag, init_schema, make_engine

    engine = make_engine(url)
    init_schema(engine, create=True)
    rng = np.random.default_rng(0)
    start = datetime(2015, 1, 1).timestamp()
    cameras = [("Canon", "Canon EOS R5"), ("NIKON CORPORATION", "NIKON Z 6"), ("Apple", "iPhone 15")]
    places = [(48.8566, 2.3522), (35.6762, 139.6503), (-12.0464, -77.0428)]
    with engine.begin() as conn:
        for lo in range(0, n, 100_000):
            hi = min(n, lo + 100_000)
            taken = start + rng.uniform(0, 10 * 365.25 * 86400, hi - lo)
            cam = rng.integers(0, 3, hi - lo)
            place = rng.integers(0, 9, hi - lo)
            sizes = rng.integers(100_000, 10_000_000, hi - lo)
            files = []
            for j, i in enumerate(range(lo, hi)):
                year = datetime.fromtimestamp(taken[j]).year
                lat, lon = (places[place[j]] if place[j] < 3 else (None, None))
                files.append({"id": i + 1, "path": f"/photos/{year}/IMG_{i:07d}.jpg", "modality": "image",
                              "size": int(sizes[j]), "mtime_ns": int(taken[j] * 1e9), "phash": "0",
                              "taken_at": float(taken[j]), "camera_make": cameras[cam[j]][0],
                              "camera_model": cameras[cam[j]][1], "lat": lat, "lon": lon, "facts_version": 1})
            conn.execute(insert(File), files)
            conn.execute(insert(Item), [{"id": i + 1, "file_id": i + 1, "modality": "image", "embedder": "image",
                                         "chunk": 0} for i in range(lo, hi)])
            conn.execute(insert(Tag), [{"item_id": i + 1, "label": "dog", "confidence": 0.9}
                                       for i in range(lo, hi) if i % 100 == 0])
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    a = ap.parse_args()
    from sqlalchemy.orm import Session

    from indexer.catalog import make_engine

    with tempfile.TemporaryDirectory(prefix="xmr-bench-filters-") as tmp:
        url = f"sqlite:///{tmp}/catalog.db"
        t = time.perf_counter()
        build(url, a.n)
        build_s = time.perf_counter() - t
        engine = make_engine(url)
        out = {}
        with Session(engine) as s:
            for name, spec in FILTERS.items():
                f = make_filters(**spec)
                t = time.perf_counter()
                ids = matching_ids(s, f)
                out[name] = {"passing": int(len(ids)), "fraction": round(len(ids) / a.n, 4),
                             "seconds": round(time.perf_counter() - t, 3)}
        engine.dispose()
    print(json.dumps({"n": a.n, "build_s": round(build_s, 1), "filters": out}, indent=2))


if __name__ == "__main__":
    main()
