"""A library: a directory holding the SQL catalog and the FAISS index, bound to one encoder.

`Library` is the public face; it composes the parts and holds no protocol of its own:

    store     indexer.store.Store            catalog, write lock, index/bridge files, commits
    models    indexer.models.Models          which encoders made the vectors; loading them
    audio     indexer.audio_bridge.AudioBridge  the CLAP -> CLIP bridge and the stored sounds
    policy    indexer.index_policy.IndexPolicy  when the FAISS index is rebuilt or retuned
    searcher  retrieval.search.Searcher      queries, items, more like this (+ calibration)
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from indexer import extra_models, face_sync, shards
from indexer.audio_bridge import AudioBridge
from indexer.catalog import get_meta
from indexer.check import CheckReport, check_library
from indexer.index_policy import IndexPolicy
from indexer.models import Models
from indexer.stages.options import IndexOptions
from indexer.stages.report import CallbackReporter, IndexReport, Reporter
from indexer.store import Store
from indexer.vectors import VectorIndex
from retrieval.encoders import Encoder, EncoderSpec
from retrieval.errors import UsageError
from retrieval.paths import default_library_dir
from retrieval.people import People
from retrieval.query import Query
from retrieval.request import Resolved, SearchRequest, request_of
from retrieval.search import Hit, Searcher

__all__ = ["CheckReport", "Library"]


@dataclass(frozen=True)
class OpenOptions:
    """How a library is opened (Library's keyword arguments)."""

    model: str | None = None
    pretrained: str | None = None
    db: str | None = None
    device: str = "auto"
    create: bool = False
    factory: str | None = None
    encoder: Encoder | None = None
    audio_model: str | None = None
    recall: float | None = None
    max_memory: int | None = None


class Library:
    """Open (or create) the library in `path` (`options`, or OpenOptions' fields as keywords);
    the encoder loads on first use.

    `model`/`pretrained` may be omitted to reuse what the library recorded; giving a different
    encoder than the recorded one raises EncoderMismatchError. An already loaded `encoder` may
    be passed instead of `model`/`pretrained` (it is checked the same way).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, options: OpenOptions | None = None,
                 **fields: Any) -> None:
        o = options or OpenOptions(**fields)
        self.path = Path(path).expanduser() if path else default_library_dir()
        self.device = o.device
        store = Store(self.path, db=o.db, create=o.create, device=o.device, factory=o.factory)
        with self._undone_if_first_fails(store):
            if o.model is not None or o.encoder is not None:  # one of the library's added models?
                asked = (o.encoder.spec.model, o.encoder.spec.pretrained or "none") if o.encoder is not None \
                    else (o.model, o.pretrained)
                with store.Session() as s:
                    main, key = get_meta(s, "encoder"), extra_models.find(s, *asked)
                    if main is not None and key is not None and not extra_models.asked_for(EncoderSpec.from_dict(main), *asked):
                        store.engine.dispose()
                        store = Store(self.path, db=o.db, device=o.device, slot=key)  # searches with that model
            self._compose(store, model=o.model, pretrained=o.pretrained, encoder=o.encoder, audio_model=o.audio_model,
                          factory=o.factory, recall=o.recall, max_memory=o.max_memory)

    @staticmethod
    @contextmanager
    def _undone_if_first_fails(store: Store) -> Iterator[None]:
        """A first command that fails before anything was committed (a usage error, weights that
        cannot be loaded, Ctrl-C) leaves no library behind."""
        try:
            yield
        except BaseException:
            store.discard_if_unused()
            raise

    def _compose(self, store: Store, *, audio_encoder: Any = None, factory: str | None = None,
                 recall: float | None = None, max_memory: int | None = None, **models: Any) -> None:
        if store.slot is not None:
            with store.Session() as s:
                models["identity"] = extra_models.extras(s)[store.slot]["identity"]
        self.store = store
        self._added_encoders: dict[str, Encoder] = {}  # added models loaded by this view, by key
        with store.Session() as s:
            self.models = Models(s, audio_encoder=audio_encoder, device=self.device, **models)
        self.policy = IndexPolicy(store, factory=factory, recall=recall, max_memory=max_memory,
                                  has_vectors=self.models.recorded_identity is not None)
        self.audio = AudioBridge(store, self.models)
        self.searcher = Searcher(store, self.models, self.audio)

    # -- what the parts know ------------------------------------------------------------------

    @property
    def db_url(self) -> str:
        return self.store.db_url

    @property
    def engine(self) -> Engine:
        return self.store.engine

    @property
    def Session(self) -> sessionmaker[Session]:  # noqa: N802 - SQLAlchemy's own name for it
        return self.store.Session

    @property
    def index_path(self) -> Path:
        """The current (committed) index file."""
        return self.store.index_path

    @property
    def bridge_path(self) -> Path:
        """The current (committed) bridge file."""
        return self.store.bridge_path

    @property
    def factory(self) -> str:
        """The FAISS index_factory string of the library's index."""
        return self.store.factory

    @property
    def spec(self) -> EncoderSpec:
        return self.models.spec

    @property
    def recorded_identity(self) -> dict[str, Any] | None:
        """The encoder that made the library's vectors (None before the first index run)."""
        return self.models.recorded_identity

    @property
    def audio_model(self) -> str:
        return self.models.audio_model

    @property
    def encoder(self) -> Encoder:
        """The CLIP encoder, loaded on first use and checked against the library's record."""
        return self.models.encoder

    @property
    def audio_encoder(self) -> Any:
        """The CLAP encoder, loaded on first use."""
        return self.models.audio_encoder

    def vectors(self, create: bool = False, writable: bool = False) -> VectorIndex | None:
        """The FAISS index (None when there is none yet; `create`: an empty one)."""
        if create:
            return self.store.vectors(writable=True) or self.store.vectors(create_dim=self.encoder.dim)
        return self.store.vectors(writable=writable)

    def bridge(self) -> Any:
        """The library's audio bridge (None before the first sound is indexed)."""
        return self.audio.current()

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def write_lock(self, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """One writer at a time (see Store.write_lock)."""
        with self.store.write_lock(wait, on_wait):
            yield

    def index(self, paths: Sequence[str | os.PathLike[str]] = (), options: IndexOptions | None = None, *,
              reporter: Reporter | None = None, on_skip: Callable[[str, str], None] | None = None,
              on_wait: Callable[[str], None] | None = None, **settings: Any) -> IndexReport:
        """Index `paths` (or every root indexed before; indexer.pipeline.run_index). Settings are
        IndexOptions' fields (batch_size=, ...) or `options`; skips go to `reporter` or `on_skip(path,
        reason)`. Added models and faces join the pass; what they lack follows (extra_models, face_sync)."""
        from indexer.pipeline import run_index

        if self.slot is not None:  # a view of an added model: the main one indexes
            with Library(self.path, db=self.db_url, device=self.device) as main:
                return main.index(paths, options, reporter=reporter, on_skip=on_skip, on_wait=on_wait, **settings)
        options = options or IndexOptions.from_kwargs(**settings)
        reporter = reporter or CallbackReporter(on_skip, on_wait)
        with self._undone_if_first_fails(self.store):
            report = run_index(self.store, self.models, self.audio, self.policy, [str(p) for p in paths], options,
                               reporter, self._added_encoders)
        self.sync_models(on_skip=reporter.skip, wait=options.wait)
        report.faces += face_sync.sync(self.store, on_skip=reporter.skip, wait=options.wait).found
        shards.after_commit(self.store)
        self.store.keep_counts(options.wait)  # for `xmr stats` at 10M files
        return report

    def shard(self, n: int | None) -> list[Path]:
        """Cut the vectors into n shards for `xmr serve --ray` (indexer.shards); remembered, so
        later index runs cut them again. None: cut again with the remembered n; 1: not sharded."""
        return shards.shard_library(self.store, n)

    # -- more than one model ------------------------------------------------------------------

    @property
    def slot(self) -> str | None:
        """The key of the added model this view searches with; None for the main model."""
        return self.store.slot

    def sync_models(self, **options: Any) -> dict[str, Any]:
        """Bring the added models' vectors in step with the catalog (extra_models.sync)."""
        with self.store.Session() as s:
            if not extra_models.extras(s):
                return {}
        return extra_models.sync(self.store, device=self.device, encoders=self._added_encoders, **options)

    def add_model(self, model: str | None, pretrained: str | None = None, **options: Any) -> dict[str, Any]:
        """Add model B's vectors beside the main model's (`xmr index --add-model`): every picture
        and text item is encoded with B; searches with `Library(path, model=B)` use them."""
        if self.recorded_identity is None:
            raise UsageError("this library has no vectors yet: index it with the model first")
        key, encoder = extra_models.add(self.store, self.spec, model, pretrained, device=self.device,
                                        wait=options.get("wait", False))
        self._added_encoders[key] = encoder
        return self.sync_models(**options)

    people = property(lambda self: People(self.store), doc="The people in the library's pictures (`xmr people`).")

    def models_info(self) -> list[extra_models.ModelInfo]:
        """The library's models (`xmr models`): the main one, then the added ones."""
        with self.store.Session() as s:
            return extra_models.describe(s, get_meta(s, "encoder"), get_meta(s, "vectors_total"))

    def drop_model(self, model: str, pretrained: str | None = None, wait: bool = False) -> str:
        """Remove a model's vectors (`xmr models drop`). Dropping the main model makes the first
        up-to-date added one the main model. Returns the description of the model dropped."""
        with self.store.Session() as s:
            main, key = get_meta(s, "encoder"), extra_models.find(s, model, pretrained)
            added = list(extra_models.extras(s))
        if key is not None:
            return extra_models.drop(self.store, key, wait=wait)
        if main is not None and extra_models.asked_for(EncoderSpec.from_dict(main), model, pretrained):
            if not added:
                raise UsageError("it is this library's only model; remove the library instead")
            return extra_models.promote(self.store, added[0], wait=wait)
        raise UsageError(f"this library has no vectors of {model}; `xmr models` lists its models")

    def fit_bridge(self, session: Session, **options: Any) -> Any:
        """Fit and stage a new audio bridge (see AudioBridge.fit); the caller holds the write
        lock and commits (`lib.store.commit(session)`)."""
        return self.audio.fit(session, **options)

    def refit_bridge(self, *, captions: str | os.PathLike[str] | None = None, method: str = "auto",
                     reporter: Reporter | None = None) -> Any:
        """Fit the audio bridge anew and make it the library's (`xmr bridge fit`)."""
        with self._undone_if_first_fails(self.store), self.write_lock(), self.Session() as s:
            bridge = self.audio.fit(s, captions=captions, method=method, reporter=reporter)
            self.store.commit(s)
        return bridge

    # -- reading ------------------------------------------------------------------------------

    def search(self, request: SearchRequest | Query | str | None = None, **fields: Any) -> list[Hit]:
        """Nearest items to a request (retrieval.request.SearchRequest), or a text or a Query with
        request fields beside it (`lib.search("a red car", type="image", k=20, after="2020")`),
        best first. A text's query language applies (`"a red car type:image after:2020"`); several
        kinds are merged by calibrated score; `mode`: 'hybrid', 'semantic' or 'words'."""
        return self.run_search(request_of(request, fields).resolve())

    def run_search(self, r: Resolved) -> list[Hit]:
        """A resolved request's hits (the server resolves first, to echo its filters)."""
        if self.slot is not None and r.query is not None and r.query.audios:
            raise UsageError("sounds are bridged into the library's main model only; search by sound without --model")
        if r.like and r.query is not None:
            vectors = [*r.query.vectors, *(self.item_vector(i) for i in r.like)]
            r = replace(r, query=replace(r.query, vectors=vectors))
        return self.searcher.search(r)

    def item(self, item_id: int) -> dict[str, Any]:
        """One item with its file: what a result links to. NotFoundError when it is not there."""
        return self.searcher.item(item_id)

    def item_vector(self, item_id: int) -> np.ndarray:
        """An item's stored vector, unit length (NotFoundError when the index lacks it)."""
        return self.searcher.item_vector(item_id)

    def similar(self, item_id: int, *, k: int = 10, modality: str | None = None) -> list[Hit]:
        """More like this: the nearest items from other files."""
        return self.searcher.similar(item_id, k=k, modality=modality)

    # -- organising: tags and duplicates ------------------------------------------------------

    def tag(self, labels: Sequence[str], *, threshold: float = 0.5, prompt: str | None = None,
            modality: str | None = None, wait: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, int]:
        """Zero-shot tags for the library's items (retrieval.tagging); items newly tagged per label."""
        from retrieval.tagging import tag_items

        if self.slot is not None:
            raise UsageError("tags are made with the library's main model; drop --model")
        with self.store.write_lock(wait), self.store.Session() as s:
            added = tag_items(s, self.searcher, labels, threshold=threshold, prompt=prompt, modality=modality,
                              progress=progress)
            s.commit()
        return added

    def tags(self, label: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Labels with their counts; with `label`, its items, most sure first."""
        from retrieval.tagging import tag_counts, tagged

        with self.store.Session() as s:
            return tagged(s, label, limit) if label is not None else tag_counts(s)

    def untag(self, labels: Sequence[str], wait: bool = False) -> int:
        """Remove labels and their tags; the tags removed."""
        from retrieval.tagging import forget_labels

        with self.store.write_lock(wait), self.store.Session() as s:
            removed = forget_labels(s, labels)
            s.commit()
        return removed

    def dupes(self, *, threshold: float = 0.95, modality: str | None = None,
              progress: Callable[[int], None] | None = None) -> list[Any]:
        """Groups of duplicate files (retrieval.dupes.DupeGroup), largest reclaimable space first."""
        from retrieval.dupes import find_dupes

        with self.store.Session() as s:
            return find_dupes(s, self.store.vectors(), threshold=threshold, modality=modality, progress=progress)

    def embed_audio_file(self, path: str) -> np.ndarray:
        """A sound file as a query vector (its windows averaged, bridged into the CLIP space)."""
        return self.audio.embed_file(path)

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Let go of the catalog's connections and the loaded index (the models stay loaded with
        this object). Used again, it opens connections and reads the index again; twice is harmless."""
        self.store.forget_loaded()
        self.engine.dispose()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- long-lived readers -------------------------------------------------------------------

    def disk_signature(self) -> tuple[Any, ...]:
        """Changes whenever a writer commits: a long-lived reader (the server) then reopens."""
        return self.store.disk_signature()

    def reopen(self) -> "Library":
        """A fresh view of this library as it is on disk now that keeps the models already
        loaded here; the index is reused when its file did not change."""
        from retrieval.errors import EncoderMismatchError

        store = self.store.reopen()
        new = Library.__new__(Library)
        new.path, new.device = self.path, self.device
        try:
            new._compose(store, encoder=self.models.loaded_encoder, audio_encoder=self.models.loaded_audio_encoder)
        except EncoderMismatchError:  # the library was rebuilt with another model
            new._compose(store, audio_encoder=self.models.loaded_audio_encoder)
        return new

    # -- reports ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Files, items, vectors, encoder, index and bridge, size: what `xmr stats` prints."""
        from indexer.stats import folder_size, read_stats

        with self.engine.connect() as conn:
            st = read_stats(lambda sql: list(conn.exec_driver_sql(sql).fetchall()))
        st.pop("schema_version")
        if st["vectors"] is None or self.store.loaded_vectors is not None:
            vecs = self.vectors()
            st["vectors"] = vecs.ntotal if vecs is not None else 0
        return {
            "library": str(self.path),
            "database": self.engine.url.render_as_string(hide_password=True),
            **st,
            "encoder": self.recorded_identity,  # None: no index run has recorded one yet
            "index_type": self.store.factory,
            "index_tuning": self.store.tuning,
            "index_policy": self.policy.settings,
            "bridge": self.audio.describe(),
            "size_bytes": folder_size(self.path),
        }

    def check(self, repair: bool = False) -> CheckReport:
        """Verify rows <-> vectors <-> files; with `repair`, fix what can be fixed without a model."""
        return check_library(self.store, self.audio, (self.recorded_identity or {}).get("dim"), repair)
