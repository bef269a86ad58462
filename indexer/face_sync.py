"""After every index run: faces brought in step with the catalog.

1. Files whose faces were not looked for (indexed before faces were on, or by Ray's workers,
   which run the main model only) are looked at now: their pictures decoded again by their
   kind (a video's shots by their chunk), nothing re-encoded; committed as it goes.
2. The faces' FAISS index follows the catalog's faces (indexer.face_index).
3. New faces join people (indexer.people_store.group_new_faces).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer import face_catalog, face_index, people_store
from indexer.catalog import File, Item, get_meta
from indexer.extra_models import FILES_PER_ROUND, picture_inputs
from indexer.kinds.video import SEGMENT_MAX_S
from indexer.readers import ReaderSettings
from indexer.stages.context import DecodeContext, DecodeSetup
from indexer.stages.report import Reporter
from indexer.store import Store

OnSkip = Callable[[str, str], None]


@dataclass
class FaceSyncReport:
    looked: int = 0  # files caught up
    found: int = 0  # faces found in them
    skipped: int = 0
    people: int = 0  # people made by this sync
    joined: int = 0  # faces that joined a person


def sync(store: Store, *, on_skip: OnSkip | None = None, progress: Callable[[str], None] | None = None,
         checkpoint_seconds: float = 30.0, workers: int | None = None, wait: bool = False) -> FaceSyncReport:
    """Catch up, bring the index in step, group (see the module's docstring)."""
    report = FaceSyncReport()
    with store.write_lock(wait), store.Session() as s:
        if face_catalog.faces_on(s, None) and face_catalog.installed():
            _catch_up(s, report, on_skip or Reporter().skip, progress, checkpoint_seconds, workers)
        face_index.sync(store.path, s)
        report.people, report.joined = people_store.group_new_faces(s)
        s.commit()
    return report


def _context(s: Session) -> DecodeContext:
    from indexer.stages.face_embed import face_inputs

    return DecodeContext(DecodeSetup(models=(face_inputs(own_copy=False),), tokenizer=None, context_length=0,
                                     segment_max=float(get_meta(s, "segment_max", SEGMENT_MAX_S)), audio_model=None,
                                     readers=ReaderSettings(ocr_on=False, speech_model=None)))


def _catch_up(s: Session, report: FaceSyncReport, on_skip: OnSkip, progress: Callable[[str], None] | None,
              checkpoint_seconds: float, workers: int | None) -> None:
    from indexer.stages.face_embed import FACES, FaceEmbedder

    files = list(s.scalars(select(File).where(File.modality.in_(face_catalog.FACE_KINDS), File.faces_seen.is_(None))
                           .order_by(File.id)))
    if not files:
        return
    if progress:
        progress(f"looking for faces in {len(files)} files indexed without them")
    pictures: dict[int, list[Item]] = {f.id: [] for f in files}
    for part in range(0, len(files), 500):
        ids = [f.id for f in files[part:part + 500]]
        for it in s.scalars(select(Item).where(Item.file_id.in_(ids), Item.embedder == "image")
                            .order_by(Item.file_id, Item.chunk, Item.start)):
            pictures[it.file_id].append(it)
    ctx, embedder, last = _context(s), FaceEmbedder(workers), time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers or 2, thread_name_prefix="xmr-faces-decode") as pool:
        for start in range(0, len(files), FILES_PER_ROUND):
            round_ = files[start:start + FILES_PER_ROUND]
            for f, its, inputs in pool.map(lambda f: picture_inputs(ctx, f, pictures[f.id], FACES), round_):
                found = embedder.embed(inputs, None).found if not isinstance(inputs, str) and inputs else []
                if isinstance(inputs, str) or found is None or any(x is None for x in found):
                    report.skipped += 1
                    on_skip(f.path, f"faces not looked for: {inputs if isinstance(inputs, str) else 'unreadable'}")
                    continue
                report.found += face_catalog.add(s, f.id, [(it.id, fs) for it, fs in zip(its, found) if fs])
                f.faces_seen = face_catalog.FACES_VERSION
                report.looked += 1
            if time.perf_counter() - last >= checkpoint_seconds:
                s.commit()
                last = time.perf_counter()
    s.commit()
