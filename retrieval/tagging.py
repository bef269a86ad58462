"""Zero-shot tags: labels given to pictures, texts, sounds and video moments by the model that
searches, each with a confidence.

Labels of one run compete, as in CLIP's zero-shot classification: each item's cosines to the
labels' prompted text vectors are shared out by a softmax at CLIP's temperature (100).
- An exclusive group (`--labels "red|green|blue"`, or such a line in a labels file): an item gets
  its best label of the group when that label's share, its confidence, reaches the threshold.
- Labels given alone (`--labels "cat,dog,receipt"`): yes/no tags. An item gets each label for
  which it stands out in the library (calibrated, retrieval.calibration, and before the label's
  `--cutoff auto` edge: retrieval.cutoff) and whose share is at least half the best label's (the
  labels that fit it best); the confidence is a logistic of its standing around that edge.
Why: a label's own score curve, cut where it drops, cut between shapes as often as between
colours on a second model ("red" tagged orange pictures and none of the red ones); the share
among rivals fixes that. An attribute every item has one value of (a colour) is an exclusive
set: its recall holds on every model measured, where labels alone, which must stand out, miss
the tiers of a curve (`python -m scripts.eval_tags`, README: "Tags").

What was tagged is recorded per label (meta `tagging`: prompt, threshold, its set, the highest
item id done): a re-run scores only items added since (a changed file gets new item ids), and a
new threshold, prompt or set tags everything again for that label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from indexer.catalog import File, Item, Tag, get_meta, set_meta
from retrieval.cutoff import Z_MIN, auto_split
from retrieval.calibration import Channel
from retrieval.errors import UsageError

DEFAULT_LABELS = Path(__file__).parent / "data" / "labels.txt"
DEFAULT_THRESHOLD = 0.5
# A picture is described to the text encoder the way CLIP was taught (its zero-shot prompts);
# texts and sounds are matched against the label as written.
PROMPTS = {"image": "a photo of {}", "default": "{}"}
MAX_LABELS = 1000
CLIP_SCALE = 100.0  # CLIP's learned logit scale at its cap (exp(4.6052)): the zero-shot classifier's temperature
FIT_SHARE = 0.5  # a label alone fits an item when its softmax share is at least half the best label's
BATCH = 50_000  # stored vectors scored at a time (memory stays flat on a large library)


def confidence(z: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Calibrated scores -> 0..1, 0.5 at `centre`."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(z, np.float64) - centre) / width))


def split_for(z: np.ndarray) -> tuple[float, float]:
    """(centre, width) of a label's confidence over a kind's calibrated scores."""
    # the largest drop: a label alone must stand out from everything it is not (where a query's
    # list may stop at its first clear edge)
    kept, left = auto_split(z, share=1.0)
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


def label_sets(labels: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The run's labels alone and its exclusive groups ("red|green|blue": one of them at most)."""
    alone, groups = [], []
    for label in labels:
        parts = [p.strip() for p in label.split("|") if p.strip()]
        if len(parts) > 1:
            groups.append(parts)
        elif parts:
            alone.append(parts[0])
    return alone, groups


def softmax_rows(cos: np.ndarray) -> np.ndarray:
    """Each row's softmax at CLIP's temperature: how a zero-shot classifier shares an item among labels."""
    logits = CLIP_SCALE * cos
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


class _Tagger:
    """One run of `xmr tag`: label vectors, each channel's items and their cosines."""

    def __init__(self, s: Session, searcher: Any, prompt: str | None, threshold: float) -> None:
        self.s, self.searcher, self.prompt, self.threshold = s, searcher, prompt, threshold
        self.vecs = searcher.store.vectors()
        self.encoder = searcher.models.encoder
        self._text: dict[str, np.ndarray] = {}

    def vector(self, channel: Channel, label: str) -> np.ndarray:
        text = _prompt(self.prompt, channel[1], label)
        if text not in self._text:
            self._text[text] = getattr(self.encoder, "encode_query", self.encoder.encode_text)([text])[0]
        return self._text[text]

    def cosines(self, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """(items, labels) cosines, BATCH stored vectors at a time (memory stays flat)."""
        return np.concatenate([self.vecs.reconstruct_many(ids[i : i + BATCH]) @ vectors.T
                               for i in range(0, len(ids), BATCH)]) if len(ids) else np.zeros((0, len(vectors)))

    def standing(self, channel: Channel, v: np.ndarray, sims: np.ndarray) -> np.ndarray:
        return np.asarray(self.searcher.calibrator.calibrate(self.s, self.vecs, v, {channel: sims})[channel], np.float64)


def _alone(t: _Tagger, channel: Channel, ids: np.ndarray, labels: list[str],
           splits: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Labels given alone: an item gets a label when it stands out for it in the library (its
    calibrated score before the label's `--cutoff auto` edge) and the label fits it about as well
    as the best label of the set does (softmax share at least half the best's)."""
    vectors = np.stack([t.vector(channel, label) for label in labels])
    cos = t.cosines(ids, vectors)
    share = softmax_rows(cos)
    fits = share >= share.max(axis=1, keepdims=True) * FIT_SHARE if len(labels) > 1 else np.ones_like(share, bool)
    out = {}
    for j, label in enumerate(labels):
        z = t.standing(channel, vectors[j], cos[:, j])
        # the items that stand out for the label (before its `--cutoff auto` edge): rivals do not
        # cover everything an item may be (a purple triangle fits "purple square" better than
        # "orange star"), so fitting best is not enough
        centre, width = splits.get(label) or split_for(z)
        splits[label] = [centre, width]
        conf = confidence(z, centre, width)
        keep = (conf >= t.threshold) & fits[:, j]
        out[label] = (ids[keep], conf[keep])
    return out


def _exclusive(t: _Tagger, channel: Channel, ids: np.ndarray, group: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """An exclusive group: each item is classified among the group's labels as CLIP's zero-shot
    classification does (softmax at CLIP's temperature); it gets its best label when that label's
    share (the confidence) reaches the threshold."""
    vectors = np.stack([t.vector(channel, label) for label in group])
    share = softmax_rows(t.cosines(ids, vectors))
    best = share.argmax(axis=1) if len(ids) else np.zeros(0, int)
    conf = share[np.arange(len(ids)), best] if len(ids) else np.zeros(0)
    out = {}
    for j, label in enumerate(group):
        keep = (best == j) & (conf >= t.threshold)
        out[label] = (ids[keep], conf[keep])
    return out


def tag_items(s: Session, searcher: Any, labels: Sequence[str], *, threshold: float = DEFAULT_THRESHOLD,
              prompt: str | None = None, modality: str | None = None,
              progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Tag the library's items (of one modality, or all) with `labels` (a label "a|b|c" is an
    exclusive group); returns the items newly tagged per label. The caller holds the write lock
    and commits. A label tagged before with the same settings scores only items added since."""
    if not 0.0 < threshold < 1.0:
        raise UsageError(f"--threshold is a confidence between 0 and 1, got {threshold}")
    t = _Tagger(s, searcher, prompt, threshold)
    if t.vecs is None or t.vecs.ntotal == 0:
        raise UsageError("nothing to tag: the library has no items yet (run `xmr index PATH`)")
    alone, groups = label_sets(labels)
    done: dict[str, Any] = dict(get_meta(s, "tagging", {}) or {})
    channels = [c for c in searcher.present(s, t.vecs) if modality is None or c[0] == modality]
    upto = int(t.vecs.ids().max())
    # what each label was tagged with before; a label with other settings (or set) starts again
    setting = {label: {"threshold": threshold, "prompt": prompt, "set": "|".join(g)} for g in groups for label in g}
    setting.update({label: {"threshold": threshold, "prompt": prompt, "set": ",".join(alone)} for label in alone})
    since = {}
    for label, want in setting.items():
        rec = done.get(label) or {}
        same = all(rec.get(k) == v for k, v in want.items())
        since[label] = int(rec.get("upto", 0)) if same else 0
        if not same:
            s.execute(delete(Tag).where(Tag.label == label))
            done[label] = {**want, "upto": 0, "splits": {}}
    added = {label: 0 for label in setting}
    first = min(since.values(), default=0)  # one pass over the items none of the labels has seen
    for channel in channels:
        ids = searcher.channel_ids(s, t.vecs, channel)
        ids = ids[ids > first]
        name = "/".join(channel)
        found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if alone:
            splits = {label: done[label]["splits"].get(name) for label in alone}
            found.update(_alone(t, channel, ids, alone, splits))
            for label in alone:
                done[label]["splits"][name] = splits[label]
        for group in groups:
            found.update(_exclusive(t, channel, ids, group))
        for label, (got, conf) in found.items():
            new = got > since[label]  # items a label has seen keep their tags
            s.add_all(Tag(item_id=int(i), label=label, confidence=float(c)) for i, c in zip(got[new], conf[new]))
            added[label] += int(new.sum())
    for label in setting:
        done[label]["upto"] = max(upto, since[label])
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

