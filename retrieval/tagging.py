"""Zero-shot tags: labels given to pictures, texts, sounds and video moments by the model that
searches, with a calibrated confidence.

A label is scored as a query is: its text vector's cosine to every item of a kind, calibrated
(standard deviations above the label's cosines to a random sample of the kind:
retrieval.calibration), and cut where `--cutoff auto` would cut that list (retrieval.cutoff:
the largest drop among the items that stand out). The confidence is a logistic of the
calibrated score centred on the middle of that drop, as wide as a quarter of it: the items just
above the drop have 0.88, those just below 0.12; the default threshold 0.5 tags exactly what
`--cutoff auto` returns for the label. Items at or above the threshold are stored with their
confidence.

What was tagged is recorded per label (meta `tagging`: prompt, threshold, each kind's centre
and width, the highest item id done): a re-run scores only items added since (a changed file
gets new item ids) against the recorded centre, and a new label, threshold or prompt tags
everything again for that label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from indexer.catalog import File, Item, Tag, get_meta, set_meta
from retrieval.cutoff import Z_MIN, auto_split
from retrieval.errors import UsageError

DEFAULT_LABELS = Path(__file__).parent / "data" / "labels.txt"
DEFAULT_THRESHOLD = 0.5
# A picture is described to the text encoder the way CLIP was taught (its zero-shot prompts);
# texts and sounds are matched against the label as written.
PROMPTS = {"image": "a photo of {}", "default": "{}"}
MAX_LABELS = 1000
BATCH = 50_000  # stored vectors scored at a time (memory stays flat on a large library)


def confidence(z: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Calibrated scores -> 0..1, 0.5 at `centre`."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(z, np.float64) - centre) / width))


def split_for(z: np.ndarray) -> tuple[float, float]:
    """(centre, width) of a label's confidence over a kind's calibrated scores."""
    kept, left = auto_split(z)
    if kept == float("inf"):  # nothing stands out: nothing is tagged (a finite centre: it is stored as JSON)
        return 1e9, 1.0
    if left == float("-inf"):  # everything stands out
        return Z_MIN, 0.25
    return (kept + left) / 2, max((kept - left) / 4, 0.05)


def _is_file(spec: str) -> bool:
    try:
        return Path(spec).expanduser().is_file()
    except (OSError, ValueError):  # a long list of labels is no file name
        return False


def read_labels(spec: str | None) -> list[str]:
    """Labels from a file (one per line, '#' comments), a comma-separated list, or xmr's default set."""
    if spec is None:
        text = DEFAULT_LABELS.read_text(encoding="utf-8")
        labels = text.splitlines()
    elif _is_file(spec):
        try:
            labels = Path(spec).expanduser().read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--labels {spec}: cannot read it ({e})") from None
    else:
        labels = spec.split(",")
    out: list[str] = []
    for line in labels:
        label = " ".join(line.split("#", 1)[0].split())
        if label and label not in out:
            if len(label) > 200:
                raise UsageError(f"a label longer than 200 characters: {label[:40]!r}...")
            out.append(label)
    if not out:
        raise UsageError("no labels given: --labels FILE (one per line) or --labels 'cat,dog,receipt'")
    if len(out) > MAX_LABELS:
        raise UsageError(f"at most {MAX_LABELS} labels at a time, got {len(out)}")
    return out


def _prompt(template: str | None, embedder: str, label: str) -> str:
    t = template or PROMPTS.get(embedder, PROMPTS["default"])
    return t.replace("{}", label) if "{}" in t else f"{t} {label}"


def tag_items(s: Session, searcher: Any, labels: Sequence[str], *, threshold: float = DEFAULT_THRESHOLD,
              prompt: str | None = None, modality: str | None = None,
              progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Tag the library's items (of one modality, or all) with `labels`; returns the items newly
    tagged per label. The caller holds the write lock and commits."""
    if not 0.0 < threshold < 1.0:
        raise UsageError(f"--threshold is a confidence between 0 and 1, got {threshold}")
    vecs = searcher.store.vectors()
    if vecs is None or vecs.ntotal == 0:
        raise UsageError("nothing to tag: the library has no items yet (run `xmr index PATH`)")
    encoder = searcher.models.encoder
    done: dict[str, Any] = dict(get_meta(s, "tagging", {}) or {})
    channels = [c for c in searcher.present(s, vecs) if modality is None or c[0] == modality]
    added: dict[str, int] = {}
    text_vectors: dict[str, np.ndarray] = {}

    def vector_of(text: str) -> np.ndarray:
        if text not in text_vectors:
            text_vectors[text] = getattr(encoder, "encode_query", encoder.encode_text)([text])[0]
        return text_vectors[text]

    upto = int(vecs.ids().max())
    for label in labels:
        rec = done.get(label)
        same = rec is not None and rec.get("threshold") == threshold and rec.get("prompt") == prompt
        since = int(rec.get("upto", 0)) if same and rec is not None else 0
        if not same:
            s.execute(delete(Tag).where(Tag.label == label))
            rec = {"threshold": threshold, "prompt": prompt, "upto": 0, "splits": {}}
        count = 0
        for channel in channels:
            ids = searcher.channel_ids(s, vecs, channel)
            ids = ids[ids > since]
            if not len(ids):
                continue
            v = vector_of(_prompt(prompt, channel[1], label))
            sims = np.concatenate([vecs.reconstruct_many(ids[i : i + BATCH]) @ v for i in range(0, len(ids), BATCH)])
            z = np.asarray(searcher.calibrator.calibrate(s, vecs, v, {channel: sims})[channel], np.float64)
            name = "/".join(channel)
            centre, width = (rec or {}).get("splits", {}).get(name) or split_for(z)
            conf = confidence(z, centre, width)
            keep = conf >= threshold
            # new items only (ids above `since`), or all after the label's tags were deleted: no row exists yet
            s.add_all(Tag(item_id=int(i), label=label, confidence=float(c)) for i, c in zip(ids[keep], conf[keep]))
            count += int(keep.sum())
            rec.setdefault("splits", {})[name] = [centre, width]
        rec["upto"] = max(upto, since)
        done[label] = rec
        added[label] = count
        if progress:
            progress(label)
    set_meta(s, "tagging", done)
    set_meta(s, "tags_version", int(get_meta(s, "tags_version", 0)) + 1)
    return added


def tag_counts(s: Session) -> list[dict[str, Any]]:
    """Each label with its items and files, most used first (labels that tagged nothing too)."""
    done: dict[str, Any] = get_meta(s, "tagging", {}) or {}
    rows = s.execute(select(Tag.label, func.count(Tag.item_id), func.count(func.distinct(Item.file_id)))
                     .join(Item, Item.id == Tag.item_id).group_by(Tag.label)).all()
    found = {label: (items, files) for label, items, files in rows}
    out = [{"label": label, "items": found.get(label, (0, 0))[0], "files": found.get(label, (0, 0))[1],
            "threshold": (done.get(label) or {}).get("threshold")}
           for label in sorted(set(done) | set(found))]
    return sorted(out, key=lambda r: (-r["items"], r["label"]))


def tagged(s: Session, label: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The items with a label, most sure first: what a reviewer looks through."""
    stmt = (select(Tag.item_id, Tag.confidence, Item.modality, Item.start, Item.end, Item.page, File.path)
            .join(Item, Item.id == Tag.item_id).join(File, File.id == Item.file_id)
            .where(Tag.label == label).order_by(Tag.confidence.desc(), Tag.item_id))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [{"item_id": i, "label": label, "confidence": round(float(c), 4), "modality": m, "start": st, "end": en,
             "page": pg, "path": p} for i, c, m, st, en, pg, p in s.execute(stmt)]


def forget_labels(s: Session, labels: Sequence[str]) -> int:
    """Remove labels and their tags; returns the tags removed."""
    done: dict[str, Any] = dict(get_meta(s, "tagging", {}) or {})
    removed = 0
    for label in labels:
        removed += s.execute(delete(Tag).where(Tag.label == label)).rowcount or 0
    for label in labels:
        done.pop(label, None)
    set_meta(s, "tagging", done)
    set_meta(s, "tags_version", int(get_meta(s, "tags_version", 0)) + 1)
    return removed

