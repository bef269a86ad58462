"""Where a result list should stop: a fixed minimum score, or `auto`, the hits that stand out
for this query.

`auto` reads the curve of the query's scores after the per-query calibration xmr already
computes for mixing kinds (retrieval.calibration): each hit's cosine as standard deviations
above the query's cosines to a random sample of the library (of the hit's kind). Raw cosines
cannot be cut at a fixed value (their level moves from query to query and model to model: rclip
#207, Immich #5996), and a fixed number of standard deviations cannot either: how far the
matches of a query stand out depends on the model (the demo model's matches stand 2 sd out, a
large CLIP's further). What holds is the shape: the hits that belong together sit close, and the
list falls away after them. So `auto` keeps the hits before the first large drop of the
calibrated curve (at least DROP_SHARE of the largest) among those standing at least Z_MIN above
the background (gap detection, one of the three rules Marqo PR #1246 tried, made scale-free by
the calibration and kept from answering a query that matches nothing by Z_MIN). The largest drop
alone held on one model and not on another: where a model keeps a concept's colour closer than
its shape, the largest drop is the edge of the colour ("a red circle" returned every red thing). Measured against a fixed top-k on labelled sets:
`python -m scripts.eval_cutoff` (README: "A cutoff that adapts").
"""

from __future__ import annotations

from typing import Sequence

from retrieval.errors import UsageError

AUTO = "auto"
Z_MIN = 1.0  # a hit standing less far above the query's background is never returned by `auto`
# The first drop at least this share of the largest ends the list: the largest alone is often the
# edge of a broader class ("red" after "red circle"; scripts/eval_cutoff.py, four models)
DROP_SHARE = 0.3
AUTO_DEPTH = 2000  # the longest list `auto` looks through
MAX_RESULTS = 10_000  # offset + k


def parse_cutoff(value: str | float | None) -> str | float | None:
    """None, 'auto', or a minimum cosine score between -1 and 1 (as typed or sent)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("auto", "none", "off"):
            return AUTO if v == "auto" else None
        try:
            value = float(v)
        except ValueError:
            raise UsageError(f"--cutoff: 'auto' or a minimum score between -1 and 1, got {value!r}") from None
    if not -1.0 <= float(value) <= 1.0:
        raise UsageError(f"--cutoff: a minimum score must be between -1 and 1, got {value}")
    return float(value)


def auto_split(z: Sequence[float], share: float = DROP_SHARE) -> tuple[float, float]:
    """Where `auto` cuts a list's calibrated scores (any order): (the lowest score kept, the
    highest left out), at the first drop among the scores >= Z_MIN that is at least `share` of
    the largest one (1: the largest). (inf, top) when nothing stands out; (lowest, -inf) when all of the list
    does (the caller may look deeper)."""
    import numpy as np

    zs = np.sort(np.asarray(z, np.float64))[::-1]
    above = int((zs >= Z_MIN).sum())
    if above == 0:
        return float("inf"), float(zs[0]) if len(zs) else float("-inf")
    if above == len(zs):
        return float(zs[-1]), float("-inf")
    drops = zs[:above] - zs[1 : above + 1]
    i = int(np.argmax(drops >= share * drops.max()))
    return float(zs[i]), float(zs[i + 1])


def auto_edge(z: Sequence[float]) -> float:
    """The lowest calibrated score `auto` keeps (see auto_split)."""
    return auto_split(z)[0]
