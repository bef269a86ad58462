"""An index run: PLAN -> DECODE -> EMBED -> WRITE (indexer.stages), composed here.

`run_index` brings a library up to date with its folders. Files are decoded by threads,
processes or Ray tasks (one Decoder interface), their segments embedded in batches by every
model of the library in one pass, and written by the one writer with checkpoints; an interrupt
stops the run at the next safe point and keeps what was checkpointed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

from sqlalchemy.orm import Session

from indexer import extra_models, face_catalog, faces
from indexer.audio_bridge import AudioBridge
from indexer.catalog import get_meta, set_meta
from indexer.index_policy import IndexPolicy
from indexer.kinds.video import SEGMENT_MAX_S
from indexer.models import Models
from indexer.readers import ReaderSettings, Readers
from indexer.scan import MediaFile
from indexer.signals import Signals, signals_deferred
from indexer.stages.context import MAIN, DecodeContext, setup_for_run
from indexer.stages.decoders import Decoder, ProcessDecoder, Source, ThreadDecoder, WholeFile
from indexer.stages.embed import Batches, FileWork, Pending, registry_for
from indexer.stages.options import IndexOptions
from indexer.stages.plan import plan_run
from indexer.stages.report import IndexReport, Reporter
from indexer.stages.write import Writer
from indexer.store import Store
from retrieval.errors import DecodeError, ModelLoadError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["IndexOptions", "IndexReport", "Reporter", "run_index"]


def run_index(store: Store, models: Models, bridge: AudioBridge, policy: IndexPolicy, paths: Sequence[str] = (),
              options: IndexOptions | None = None, reporter: Reporter | None = None,
              added_encoders: dict[str, Any] | None = None) -> IndexReport:
    """Bring the library up to date with `paths` (or every root indexed before).

    Unchanged files (same mtime and size) are not decoded; moved files (same size and partial
    hash) keep their vectors; files gone from under a root are removed. Work is checkpointed
    every `options.checkpoint_seconds` and at the end, so an interrupted run loses at most one
    interval and the next run resumes. While another process writes, raises LibraryLockedError,
    or with `options.wait` queues behind it. `added_encoders`: the library's added models
    already loaded, by key (others are loaded when there is something to embed).
    """
    options, reporter = options or IndexOptions(), reporter or Reporter()
    if options.ray:  # a cluster that cannot be reached fails the run before anything is changed
        from indexer.cluster import connect

        connect(None if options.ray is True else str(options.ray))
    with store.write_lock(options.wait, reporter.waiting), store.Session() as s:
        run = _Run(s, store, models, bridge, options, reporter)
        run.prepare(paths, policy, added_encoders if added_encoders is not None else {})
        run.execute(policy)
    return run.report


class _Run:
    """One run's state between its stages."""

    def __init__(self, s: Session, store: Store, models: Models, bridge: AudioBridge, options: IndexOptions,
                 reporter: Reporter) -> None:
        self.s, self.store, self.models, self.bridge = s, store, models, bridge
        self.options, self.reporter = options, reporter
        self.report = IndexReport()
        self.complete: list[FileWork] = []  # every segment decoded: written once all are embedded
        self.decoder: Decoder | None = None
        self.faces: Any = None  # the face model as an embedder, when this run looks for faces

    def skip(self, path: str, reason: str) -> None:
        self.report.skipped += 1
        self.report.skipped_paths.append(path)
        self.reporter.skip(path, reason)

    def prepare(self, paths: Sequence[str], policy: IndexPolicy, added_encoders: dict[str, Any]) -> None:
        """PLAN, and everything the other stages need: the writer, the models, the decode setup."""
        s, store, opts = self.s, self.store, self.options
        encoder = self.models.encoder
        self.batch_size = opts.batch_size or int(getattr(encoder, "batch_size", 32))
        self.t0 = time.perf_counter()  # indexing time, not model loading time
        self.models.record(s)
        policy.record(s)
        store.vectors(create_dim=encoder.dim)  # the writer's own copy, changed in place until the end
        store.repair_vectors(s)
        self.bridge.sync(s)
        todo = plan_run(s, paths, self.skip, [str(store.path)], opts.decode_workers, opts.scope)
        self.jobs = todo.jobs
        self.report.unchanged, self.report.moved, self.report.removed = todo.unchanged, todo.moved, len(todo.gone)
        # Added models' indexes are read only when this run changes them (Ray's workers run the
        # main model only: what they lack is caught up after the run, extra_models.sync).
        added = extra_models.open_indexes(store, s) if (self.jobs or todo.gone) and not opts.ray else {}
        self.writer = Writer(s, store, self.report, todo.known, added, opts.checkpoint_seconds,
                             missing=lambda: self.readers.notes.keys())
        self.writer.drop([f.id for f in todo.gone])
        s.flush()
        if opts.segment_max is not None:  # remembered: later runs cut new videos as these were cut
            set_meta(s, "segment_max", opts.segment_max)
        settings = ReaderSettings.of(s, ocr=opts.ocr, speech_model=opts.speech_model, device=self.models.device)
        settings.remember(s)
        self.readers = Readers(settings)
        encoders = extra_models.load_encoders(s, self.models.device, added_encoders, list(added)) if self.jobs else {}
        self.setup = setup_for_run(encoder, encoders, self.models.audio_model,
                                   float(get_meta(s, "segment_max", SEGMENT_MAX_S)), settings)
        self.faces = self._face_embedder()
        registry = registry_for(encoder, encoders, lambda: self.models.audio_encoder, self._bridge_for, self.faces)
        self.keys = registry.keys
        self.pending = Pending(registry, Batches(self.batch_size))

    def _face_embedder(self) -> Any:
        """The face model, when this run looks for faces (Ray's workers do not: caught up after)."""
        if not face_catalog.faces_on(self.s, self.options.faces) or self.options.ray or not self.jobs:
            return None
        if not face_catalog.installed():
            raise ModelLoadError(faces.INSTALL)
        from indexer.face_gate import FaceGate
        from indexer.stages.face_embed import FaceEmbedder, face_inputs

        self.setup = replace(self.setup, models=(*self.setup.models, face_inputs()))
        return FaceEmbedder(self.options.decode_workers, FaceGate.of(self.s, self.models.encoder))

    def _bridge_for(self, raw: np.ndarray) -> Any:
        with self.writer.writing():  # the first sounds of a library fit its bridge (it re-projects stored ones)
            return self.bridge.bridge_for(self.s, raw, self.reporter)

    def _decoder(self) -> Decoder:
        opts = self.options
        if opts.ray:
            from indexer.cluster import RayDecoder

            return RayDecoder(None if opts.ray is True else str(opts.ray), self.setup, self.models,
                              opts.batch_size, opts.ship_bytes, self.readers.adopt)
        if opts.uses_processes():
            return ProcessDecoder(self.setup, opts.decode_workers, self.readers.adopt)
        return ThreadDecoder(DecodeContext(self.setup, self.readers), opts.decode_workers, self.batch_size)

    def execute(self, policy: IndexPolicy) -> None:
        """DECODE -> EMBED -> WRITE over the plan's jobs, then the index policy and the last checkpoint."""
        bar = self.reporter.bar("indexing", len(self.jobs), "file")
        try:
            with signals_deferred() as signals:  # a Ctrl-C stops the run at the next file, not mid-write
                if self.jobs:
                    self.decoder = self._decoder()
                    for mf, source in self.decoder.files(self.jobs, signals.check):
                        signals.check()  # a safe point: no write under way
                        work = self._read(mf, source, signals)
                        bar.update(1)
                        if work is not None:
                            self._completed(work)
                self._flush()
                with self.writer.writing():
                    policy.maybe_reindex(self.s, self.reporter)
                self.writer.checkpoint()
            self.store.prune_thumbnails()  # also those a run killed before its pruning left behind
        except BaseException:
            self.report.interrupted = True
            if self.decoder is not None:
                self.decoder.close()
            self.complete.clear()  # pending decoded files are simply redone next time
            self.writer.abort()
            raise
        finally:
            bar.close()
            if self.decoder is not None:
                self.decoder.close()
            self.report.seconds = time.perf_counter() - self.t0

    def _read(self, mf: MediaFile, source: Source, signals: Signals) -> FileWork | None:
        """DECODE one file, its segments embedded as they come; None when it was skipped."""
        work: FileWork | None = None
        try:
            head = source.open(signals.check)
            if head.kind is None:
                return None
            work = FileWork(mf, head.kind, head.phash, head.facts, vectors={k: [] for k in self.keys})
            remote = source.decoded if isinstance(source, WholeFile) and source.decoded.vectors is not None else None
            for seg in source.segments(signals.check):
                i = work.add(seg)
                if remote is None:
                    self.pending.add(work, i)
                    if len(self.pending) >= self.batch_size:
                        self.pending.embed()
            if remote is not None:
                self._adopt_vectors(work, remote)
        except DecodeError as e:
            if work is not None:
                self.pending.drop(work)
            self.skip(source.path, str(e))
            self.writer.forget(source.path)
            return None
        if not work.segments:
            self.skip(source.path, "nothing to index in it")
            return None
        return work

    def _adopt_vectors(self, work: FileWork, remote: Any) -> None:
        """Vectors embedded on Ray workers; CLAP's are moved into the library's space here."""
        import numpy as np

        work.vectors[MAIN] = list(remote.vectors[MAIN])
        work.raw = list(remote.raw or [None] * len(work.segments))
        work.segments = [replace(g, payload=None) for g in work.segments]
        sounds = [i for i, v in enumerate(work.vectors[MAIN]) if v is None]
        if sounds:
            raw = np.stack([work.raw[i] for i in sounds])
            for i, v in zip(sounds, self._bridge_for(raw).map_audio(raw)):
                work.vectors[MAIN][i] = v

    def _completed(self, work: FileWork) -> None:
        """A file whose segments are all decoded: written with the next batch, checkpointed when due."""
        self.complete.append(work)
        if sum(len(w.segments) for w in self.complete) >= self.batch_size:
            self._flush()
            self.writer.maybe_checkpoint()

    def _flush(self) -> None:
        self.pending.embed()
        for w in [w for w in self.complete if w.error is not None]:  # a picture not even the CPU could read
            self.complete.remove(w)
            self.skip(w.mf.path, w.error)
            self.writer.forget(w.mf.path)
        if self.complete:
            self.writer.write(self.complete)
            with self.writer.writing():
                self.readers.record(self.s)
                if self.faces is not None and self.faces.gate is not None:
                    self.faces.gate.remember(self.s)
            self.complete.clear()
