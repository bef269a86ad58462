"""More than one model in a library: vectors of further open_clip models beside the main one's.

The main model (meta "encoder") makes the library's items and its index file. A further model
(meta "extra_models": {key: {"identity", "index_file", "factory", "vectors"}}) has an index file
of its own, `vectors-KEY-N.faiss`, holding its vectors for the same item ids: every item its
towers embed (pictures, text, documents, videos' shots and speech). Sounds are bridged into the
main model's space only (indexer.audio_bridge), so a search with another model finds no sounds.
Searches never mix two models: a view of the library opened for model B reads B's file only
(Store(slot=KEY)).

`sync` brings each further index in step with the catalog; it runs after every index run and
when a model is added: vectors of items that are gone are removed, items without a vector are
encoded (text from the words the catalog keeps, pictures decoded again by their kind, without
OCR or speech, which only add words). It checkpoints like an index run: the index is saved under
a new name, and the catalog commit that records the name makes it current, so a run cut short
leaves the last checkpoint and the next one resumes from it.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Iterator

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from indexer.added_index import EXTRA_FACTORY, AddedIndex, committed_index
from indexer.catalog import File, Item, get_meta, set_meta
from indexer.kinds import get_kind
from indexer.kinds.video import SEGMENT_MAX_S
from indexer.models import same_weights
from indexer.stages.context import MAIN, DecodeContext, setup_for_run
from indexer.stages.report import Reporter
from indexer.store import EXTRA_META, Store
from indexer.vectors import VectorIndex
from retrieval.encoders import Encoder, EncoderSpec, load_encoder, resolve_spec
from retrieval.errors import DecodeError, UsageError, XmrError

META = EXTRA_META
EMBEDDERS = ("image", "text")  # what a further model embeds; "audio" is the main model's
FILES_PER_ROUND = 8  # files decoded ahead of the encoder (a video's shots are all held at once)

OnSkip = Callable[[str, str], None]


def model_key(spec: EncoderSpec) -> str:
    """A short stable name for a model's files: `m` and 8 hex digits of its spec."""
    return "m" + hashlib.sha1(f"{spec.family}|{spec.model}|{spec.pretrained}".encode()).hexdigest()[:8]


def extras(session: Session) -> dict[str, dict[str, Any]]:
    """The further models: {key: {"identity", "index_file", "factory", "vectors"}}."""
    return get_meta(session, META) or {}


def asked_for(spec: EncoderSpec, model: str | None, pretrained: str | None) -> bool:
    """Does --model/--pretrained name `spec`? (A pretrained tag left out matches any.)"""
    asked = resolve_spec(model or spec.model, pretrained)
    return asked.model == spec.model and (pretrained is None or asked.pretrained == spec.pretrained)


def find(session: Session, model: str | None, pretrained: str | None) -> str | None:
    """The key of the further model that --model/--pretrained name, if any."""
    for key, entry in extras(session).items():
        if asked_for(EncoderSpec.from_dict(entry["identity"]), model, pretrained):
            return key
    return None


def wanted_items(session: Session) -> int:
    """Items a further model holds a vector for, once in step."""
    return int(session.scalar(select(func.count(Item.id)).where(Item.embedder.in_(EMBEDDERS))) or 0)


@dataclass
class SyncReport:
    added: int = 0  # vectors encoded
    removed: int = 0  # vectors of items that are gone
    skipped: int = 0  # files whose pictures could not be decoded as indexed


def picture_inputs(ctx: DecodeContext, f: File, items: list[Item], key: str = MAIN) -> tuple[File, list[Item], list[Any] | str]:
    """Model `key`'s inputs of a file's picture items, in their order; or why they cannot be had."""
    try:
        st = os.stat(f.path)
        if (st.st_size, st.st_mtime_ns) != (f.size, f.mtime_ns):
            return f, items, "changed since it was indexed (run `xmr index`)"
        segs = [s for s in get_kind(f.modality).decode(f.path, ctx) if s.embedder == "image"]
    except (DecodeError, OSError) as e:
        return f, items, str(e) or type(e).__name__
    except Exception as e:  # noqa: BLE001 - a decoder's failure is this file's, not the run's
        return f, items, f"{type(e).__name__}: {e}"
    segs.sort(key=lambda s: (s.chunk, s.start or 0.0))
    if [s.chunk for s in segs] != [i.chunk for i in items]:
        # Only some items may be missing: pick their segments by chunk, when all are there.
        by_chunk = {s.chunk: s for s in segs}
        if not all(i.chunk in by_chunk for i in items):
            return f, items, "its pictures differ from when it was indexed (run `xmr index`)"
        segs = [by_chunk[i.chunk] for i in items]
    return f, items, [ctx.prepare(s).payload[key] for s in segs]


def _checkpoint(s: Session, index: AddedIndex) -> None:
    index.stage(s)
    s.commit()
    index.committed()


def open_indexes(store: Store, session: Session) -> dict[str, AddedIndex]:
    """Every added model's index, opened for writing (an index run adds to them in its pass)."""
    return {key: AddedIndex.open(store, session, key, int(entry["identity"]["dim"]))
            for key, entry in extras(session).items()}


def load_encoders(session: Session, device: str, loaded: dict[str, Encoder], keys: list[str]) -> dict[str, Encoder]:
    """The added models `keys`, loaded (kept in `loaded`) and checked against their records."""
    out = {}
    for key in keys:
        entry = extras(session)[key]
        if key not in loaded:
            spec = EncoderSpec.from_dict(entry["identity"])
            encoder = load_encoder(spec, device)
            same_weights(entry["identity"], encoder.identity(), spec.describe())
            loaded[key] = encoder
        out[key] = loaded[key]
    return out


def sync(store: Store, *, device: str = "auto", encoders: dict[str, Encoder] | None = None,
         on_skip: OnSkip | None = None, progress: Callable[[str], None] | None = None,
         checkpoint_seconds: float = 30.0, workers: int | None = None, wait: bool = False) -> dict[str, SyncReport]:
    """Bring every further model's index in step with the catalog (see the module's docstring).
    `encoders`: ones already loaded, by key."""
    encoders = encoders if encoders is not None else {}
    reports: dict[str, SyncReport] = {}
    with store.write_lock(wait), store.Session() as s:
        for key, entry in extras(s).items():
            vecs = committed_index(store, entry)
            if vecs is not None and _in_step(s, vecs):  # nothing to do: not even the model is loaded
                reports[key] = SyncReport()
                continue
            encoder = load_encoders(s, device, encoders, [key])[key]
            if progress:
                progress(f"bringing {EncoderSpec.from_dict(entry['identity']).describe()} up to date")
            index = AddedIndex(store, key, vecs or VectorIndex.create(encoder.dim, "Flat"))
            reports[key] = _sync_one(s, index, encoder, on_skip or Reporter().skip, checkpoint_seconds,
                                     workers or os.cpu_count() or 2)
    return reports


def _in_step(s: Session, vecs: VectorIndex) -> bool:
    """Does the model's index hold exactly the items it should?"""
    have = vecs.ids()
    wanted = np.fromiter(s.scalars(select(Item.id).where(Item.embedder.in_(EMBEDDERS))), np.int64)
    return len(have) == len(wanted) and bool(np.array_equal(np.sort(have), np.sort(wanted)))


def _sync_one(s: Session, index: AddedIndex, encoder: Encoder, on_skip: OnSkip, checkpoint_seconds: float,
              workers: int) -> SyncReport:
    report = SyncReport()
    vecs, last = index.vecs, [time.perf_counter()]

    def maybe_checkpoint() -> None:
        if time.perf_counter() - last[0] >= checkpoint_seconds:
            _checkpoint(s, index)
            last[0] = time.perf_counter()

    have = set(vecs.ids().tolist())
    items = list(s.scalars(select(Item).where(Item.embedder.in_(EMBEDDERS)).order_by(Item.file_id, Item.chunk, Item.start)))
    if orphans := have - {i.id for i in items}:
        report.removed = vecs.remove(sorted(orphans))
    todo = [i for i in items if i.id not in have]
    texts = [i for i in todo if i.embedder == "text"]
    batch = int(getattr(encoder, "batch_size", 32))
    for start in range(0, len(texts), batch):
        part = texts[start:start + batch]
        vecs.add(encoder.encode_text([i.snippet or "" for i in part]), [i.id for i in part])
        report.added += len(part)
        maybe_checkpoint()
    by_file: dict[int, list[Item]] = {}
    for i in todo:
        if i.embedder == "image":
            by_file.setdefault(i.file_id, []).append(i)
    ctx = _reencoding_context(s, encoder)
    files = {f.id: f for f in s.scalars(select(File).where(File.id.in_(list(by_file))))} if by_file else {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xmr-reencode") as pool:
        for round_ in _rounds(sorted(by_file), FILES_PER_ROUND):
            for f, its, inputs in pool.map(lambda fid: picture_inputs(ctx, files[fid], by_file[fid]), round_):
                if isinstance(inputs, str):
                    report.skipped += 1
                    on_skip(f.path, inputs)
                    continue
                for start in range(0, len(inputs), batch):
                    vecs.add(encoder.encode_images(inputs[start:start + batch]), [i.id for i in its[start:start + batch]])
                report.added += len(its)
            maybe_checkpoint()
    if vecs.dirty or not extras(s)[index.key].get("index_file"):
        _checkpoint(s, index)
    return report


def _reencoding_context(s: Session, encoder: Encoder) -> DecodeContext:
    """Decoding for this model's pictures alone (as its MAIN input): no OCR, no speech and no
    sound (those add words or sounds, which this model does not embed), pictures on the CPU."""
    from indexer.readers import ReaderSettings

    setup = setup_for_run(encoder, {}, None, float(get_meta(s, "segment_max", SEGMENT_MAX_S)),
                          ReaderSettings(ocr_on=False, speech_model=None))
    return DecodeContext(replace(setup, device_jpeg=False))


def _rounds(xs: list[int], n: int) -> Iterator[list[int]]:
    for start in range(0, len(xs), n):
        yield xs[start:start + n]


def add(store: Store, main_spec: EncoderSpec | None, model: str | None, pretrained: str | None, *,
        device: str = "auto", wait: bool = False) -> tuple[str, Encoder]:
    """Record model B as a further model of the library (its vectors follow with `sync`).
    Returns its key and the loaded encoder."""
    spec = resolve_spec(model, pretrained)
    if main_spec is not None and asked_for(main_spec, model, pretrained):
        raise UsageError(f"{spec.describe()} is already this library's main model")
    encoder = load_encoder(spec, device)
    key = model_key(spec)
    with store.write_lock(wait), store.Session() as s:
        all_ = extras(s)
        if key not in all_:
            all_[key] = {"identity": encoder.identity(), "index_file": None, "factory": EXTRA_FACTORY, "vectors": 0}
            set_meta(s, META, all_)
            s.commit()
    return key, encoder


def drop(store: Store, key: str, *, wait: bool = False) -> str:
    """Remove a further model and its vectors; returns its description."""
    with store.write_lock(wait), store.Session() as s:
        all_ = extras(s)
        entry = all_.pop(key)
        set_meta(s, META, all_)
        s.commit()
    if entry.get("index_file"):
        (store.path / entry["index_file"]).unlink(missing_ok=True)
    return EncoderSpec.from_dict(entry["identity"]).describe()


def promote(store: Store, key: str, *, wait: bool = False) -> str:
    """Drop the main model: further model `key` becomes the main one (its index, the library's).
    Refused while the library holds sounds, whose vectors exist in the main model's space only.
    Returns the description of the model dropped."""
    with store.write_lock(wait), store.Session() as s:
        if s.scalar(select(func.count(Item.id)).where(Item.embedder == "audio")):
            raise UsageError("the main model's vectors are the only ones this library's sounds have "
                             "(bridged from CLAP); drop the other model, or index into a new --library")
        all_ = extras(s)
        entry = all_[key]
        if (entry.get("vectors") or 0) < wanted_items(s) or not entry.get("index_file"):
            raise UsageError(f"{EncoderSpec.from_dict(entry['identity']).describe()} is not up to date; "
                             "run `xmr index` first")
        old = EncoderSpec.from_dict(get_meta(s, "encoder")).describe()
        old_file = store.index_path
        all_.pop(key)
        set_meta(s, META, all_)
        set_meta(s, "encoder", entry["identity"])
        set_meta(s, "index_file", entry["index_file"])
        set_meta(s, "factory", entry.get("factory") or EXTRA_FACTORY)
        set_meta(s, "index_tuning", None)
        set_meta(s, "vectors_total", entry.get("vectors") or 0)
        set_meta(s, "tagging", None)  # tags stay; their thresholds were the old model's
        s.commit()
    old_file.unlink(missing_ok=True)
    store.forget_loaded()
    store.refresh()
    return old


@dataclass
class ModelInfo:
    """One of a library's models, as `xmr models` lists it."""

    model: str  # its spec, described ("ViT-B-32 (laion2b_s34b_b79k)", "local-dir:/path")
    role: str  # "main" (makes the items) or "added"
    dim: int | None
    vectors: int
    behind: int = 0  # items without a vector of this model (an added one, until `xmr index`)
    key: str | None = None  # an added model's file name part

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(session: Session, main: dict[str, Any] | None, main_vectors: int | None) -> list[ModelInfo]:
    """The library's models: the main one first, each with its vectors and whether it is behind."""
    wanted = wanted_items(session)
    out = []
    if main is not None:
        out.append(ModelInfo(EncoderSpec.from_dict(main).describe(), "main", main.get("dim"), main_vectors or 0))
    for key, entry in extras(session).items():
        n = entry.get("vectors") or 0
        out.append(ModelInfo(EncoderSpec.from_dict(entry["identity"]).describe(), "added", entry["identity"].get("dim"),
                             n, max(0, wanted - n), key))
    return out


def check(s: Session, store: Store, problems: list[str], warnings: list[str]) -> None:
    """`xmr check`: each further index holds only vectors of items, and which items it lacks."""
    wanted = set(s.scalars(select(Item.id).where(Item.embedder.in_(EMBEDDERS))))
    for key, entry in extras(s).items():
        name = EncoderSpec.from_dict(entry["identity"]).describe()
        path = store.path / entry["index_file"] if entry.get("index_file") else None
        if path is None or not path.exists():
            if path is not None:
                problems.append(f"the index file of {name} is missing ({path.name})")
            continue
        try:
            ids = set(VectorIndex.load(path, entry.get("factory") or EXTRA_FACTORY).ids().tolist())
        except XmrError as e:
            problems.append(f"{name}: {e}")
            continue
        if gone := ids - wanted:
            warnings.append(f"{name}: {len(gone)} vectors of items no longer in the library; `xmr index` removes them")
        if missing := wanted - ids:
            warnings.append(f"{name}: {len(missing)} items have no vector of this model yet; `xmr index` adds them")
