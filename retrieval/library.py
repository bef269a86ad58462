"""A library: a directory holding the SQL catalog and the FAISS index, bound to one encoder."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from indexer.catalog import File, Item, Root, drop_files, get_meta, init_schema, make_engine, set_meta
from indexer.vectors import DEFAULT_FACTORY, VectorIndex, full_factory
from retrieval.encoders import DEFAULT_MODEL, DEFAULT_PRETRAINED, Encoder, EncoderSpec, load_encoder
from retrieval.errors import EncoderMismatchError, LibraryError, LibraryLockedError, UsageError
from retrieval.query import Query
from retrieval.search import MODALITIES, Hit, search_vectors

log = logging.getLogger(__name__)

INDEX_FILE = "vectors.faiss"
DB_FILE = "catalog.db"
LOCK_FILE = "write.lock"


def default_library_dir() -> Path:
    """The per-user data dir (e.g. ~/.local/share/xmr/library on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("xmr", appauthor=False)) / "library"


def resolve_spec(model: str | None, pretrained: str | None) -> EncoderSpec:
    """Normalise what the user typed: absolute paths, 'none' for random weights, default tags."""
    model = model or DEFAULT_MODEL
    if model.startswith("local-dir:"):
        return EncoderSpec(model="local-dir:" + os.path.abspath(os.path.expanduser(model[len("local-dir:"):])), pretrained=None)
    if model.startswith("hf-hub:"):
        return EncoderSpec(model=model, pretrained=None)
    if pretrained is None:
        pretrained = DEFAULT_PRETRAINED if model == DEFAULT_MODEL else _first_tag(model)
    elif pretrained.lower() == "none":
        pretrained = None
    elif os.path.isfile(os.path.expanduser(pretrained)):
        pretrained = os.path.abspath(os.path.expanduser(pretrained))
    return EncoderSpec(model=model, pretrained=pretrained)


def _first_tag(model: str) -> str | None:
    import open_clip

    if open_clip.get_model_config(model.replace("/", "-")) is None:
        raise UsageError(f"unknown model {model!r}; available: {', '.join(open_clip.list_models())}")
    tags = open_clip.list_pretrained_tags_by_model(model.replace("/", "-"))
    if not tags:
        raise UsageError(f"no pretrained weights are known for {model!r}; pass --pretrained FILE or --pretrained none")
    return tags[0]


def _spec_differs(asked: EncoderSpec, recorded: EncoderSpec, pretrained_given: bool) -> bool:
    if asked.model != recorded.model:
        return True
    return pretrained_given and asked.pretrained != recorded.pretrained


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Library:
    """Open (or create) the library in `path`; the encoder loads on first use.

    `model`/`pretrained` may be omitted to reuse what the library recorded; giving a different
    encoder than the recorded one raises EncoderMismatchError. An already loaded `encoder` may
    be passed instead of `model`/`pretrained` (it is checked the same way).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        model: str | None = None,
        pretrained: str | None = None,
        db: str | None = None,
        device: str = "auto",
        create: bool = False,
        factory: str | None = None,
        encoder: Encoder | None = None,
    ) -> None:
        self.path = Path(path).expanduser() if path else default_library_dir()
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise LibraryError(f"no library at {self.path}; run `xmr index PATH` to create one")
        self.db_url = db or f"sqlite:///{self.path / DB_FILE}"
        self.engine = make_engine(self.db_url)
        init_schema(self.engine, create=create)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        self.device = device
        self._encoder: Encoder | None = None
        self._vectors: VectorIndex | None = None

        with self.Session() as s:
            recorded = get_meta(s, "encoder")
            self.factory: str = get_meta(s, "factory") or full_factory(factory or DEFAULT_FACTORY)
        if factory and recorded and full_factory(factory) != self.factory:
            raise EncoderMismatchError(
                f"this library uses the FAISS index {self.factory!r}; it cannot be changed to {full_factory(factory)!r}"
            )
        self.recorded_identity: dict[str, Any] | None = recorded
        if encoder is not None:
            model, pretrained = encoder.spec.model, encoder.spec.pretrained or "none"
        if recorded:
            rec_spec = EncoderSpec.from_dict(recorded)
            if model is not None or pretrained is not None:
                asked = resolve_spec(model or rec_spec.model, pretrained)
                if _spec_differs(asked, rec_spec, pretrained is not None):
                    raise EncoderMismatchError(
                        f"this library was built with {rec_spec.describe()}, not {asked.describe()}; "
                        "drop --model/--pretrained to use the library's own encoder, or use another --library"
                    )
            self.spec = rec_spec
        else:
            self.spec = resolve_spec(model, pretrained)
        if encoder is not None:
            self._check_identity(encoder)
            self._encoder = encoder

    # -- parts -----------------------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        return self.path / INDEX_FILE

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use and checked against the library's record."""
        if self._encoder is None:
            enc = load_encoder(self.spec, self.device)
            self._check_identity(enc)
            self._encoder = enc
        return self._encoder

    def _check_identity(self, enc: Encoder) -> None:
        rec = self.recorded_identity
        if rec is None:
            return
        ident = enc.identity()
        for key in ("dim", "weights_sha256"):
            if rec.get(key) != ident.get(key):
                raise EncoderMismatchError(
                    f"the weights of {self.spec.describe()} changed since this library was built "
                    f"({key}: {rec.get(key)} -> {ident.get(key)}); re-index into a new --library"
                )

    def vectors(self, create: bool = False) -> VectorIndex | None:
        """The FAISS index, loaded from disk on first use (None when there is none yet)."""
        if self._vectors is None:
            if self.index_path.exists():
                self._vectors = VectorIndex.load(self.index_path, self.factory)
            elif create:
                self._vectors = VectorIndex.create(self.encoder.dim, self.factory.split(",", 1)[1])
            if self._vectors is not None and self.device != "cpu":
                # Searches run on a GPU copy when faiss has GPUs (use_gpu checks; CPU otherwise).
                self._vectors.use_gpu(int(self.device.partition(":")[2] or 0))
        return self._vectors

    def forget_unsaved_vectors(self) -> None:
        """Drop the in-memory index so the next use reads the last saved one (after a rollback)."""
        self._vectors = None

    def record_encoder(self, session: Session) -> None:
        if self.recorded_identity is None:
            self.recorded_identity = self.encoder.identity()
            set_meta(session, "encoder", self.recorded_identity)
            set_meta(session, "factory", self.factory)

    def save_and_commit(self, session: Session) -> None:
        """Checkpoint: the index file is replaced first, then the rows are committed.

        A crash between the two leaves vectors without rows, which the next writer removes.
        """
        vecs = self._vectors
        if vecs is not None:
            vecs.save(self.index_path)
        session.commit()

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """One writer at a time; a second gets LibraryLockedError instead of corrupting anything."""
        lock_path = self.path / LOCK_FILE
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except ImportError:  # pragma: no cover - not POSIX
                pass
            except BlockingIOError:
                other = os.pread(fd, 32, 0).decode(errors="replace").strip()
                raise LibraryLockedError(
                    f"another xmr process{f' (pid {other})' if other else ''} is writing to {self.path}; "
                    "wait for it to finish"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)

    def repair_vectors(self, session: Session) -> tuple[int, int]:
        """Make rows and vectors agree after an interrupted run.

        Vectors without a row are removed; files whose items lost their vectors are dropped from
        the catalog so the next run indexes them again. Returns (vectors removed, files dropped).
        """
        vecs = self.vectors()
        index_ids = set(vecs.ids().tolist()) if vecs is not None else set()
        row_ids = set(session.scalars(select(Item.id)))
        orphans = index_ids - row_ids
        missing = row_ids - index_ids
        if orphans and vecs is not None:
            vecs.remove(sorted(orphans))
        dropped = 0
        if missing:
            # Whole files go, so their other vectors do not become orphans.
            file_ids = list(set(session.scalars(select(Item.file_id).where(Item.id.in_(list(missing))))))
            drop_files(session, vecs, file_ids)
            dropped = len(file_ids)
        return len(orphans), dropped

    # -- the three things users do ----------------------------------------------------------

    def index(self, paths: Sequence[str | os.PathLike[str]] = (), **options: Any):
        """Index `paths` (or every root indexed before); see indexer.pipeline.run_index."""
        from indexer.pipeline import run_index

        return run_index(self, [str(p) for p in paths], **options)

    def search(
        self,
        query: Query | str | None = None,
        *,
        k: int = 10,
        modality: str | None = None,
        vector: np.ndarray | None = None,
    ) -> list[Hit]:
        """Nearest items to a Query (or plain text, or a ready unit vector), best first."""
        if k <= 0:
            raise UsageError(f"k must be positive, got {k}")
        if modality in (None, "any"):
            modality = None
        elif modality not in MODALITIES:
            raise UsageError(f"unknown type {modality!r}; choose from: {', '.join(MODALITIES)}, any")
        if vector is None:
            q = Query(texts=[query]) if isinstance(query, str) else query
            if q is None:
                raise UsageError("nothing to search for")
            q.validate()
            vecs = self.vectors()
            if vecs is None or vecs.ntotal == 0:
                return []
            vector = q.embed(self.encoder)
        vecs = self.vectors()
        if vecs is None:
            return []
        with self.Session() as s:
            return search_vectors(s, vecs, vector, k, modality)

    # -- reports ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        vecs = self.vectors()
        with self.Session() as s:
            files = s.scalar(select(func.count(File.id))) or 0
            items = dict(s.execute(select(Item.modality, func.count(Item.id)).group_by(Item.modality)).all())
            file_mods = dict(s.execute(select(File.modality, func.count(File.id)).group_by(File.modality)).all())
            roots = list(s.scalars(select(Root.path).order_by(Root.path)))
        size = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
        return {
            "library": str(self.path),
            "database": self.engine.url.render_as_string(hide_password=True),
            "files": files,
            "files_by_modality": file_mods,
            "items": sum(items.values()),
            "items_by_modality": items,
            "vectors": vecs.ntotal if vecs is not None else 0,
            "encoder": self.recorded_identity or {**self.spec.to_dict(), "note": "not recorded yet"},
            "index_type": self.factory,
            "roots": roots,
            "size_bytes": size,
        }

    def check(self, repair: bool = False) -> CheckReport:
        """Verify rows <-> vectors <-> files; with `repair`, fix what can be fixed without a model."""
        report = CheckReport()
        ctx = self.write_lock() if repair else nullcontext()
        with ctx, self.Session() as s:
            vecs = self.vectors()
            dim = (self.recorded_identity or {}).get("dim")
            if vecs is not None and dim is not None and vecs.d != dim:
                report.problems.append(f"index dimension {vecs.d} differs from the encoder's {dim}")
            index_ids = vecs.ids() if vecs is not None else np.zeros(0, np.int64)
            if len(np.unique(index_ids)) != len(index_ids):
                report.problems.append("the index holds duplicate ids")
            ids = set(index_ids.tolist())
            row_ids = set(s.scalars(select(Item.id)))
            if orphans := ids - row_ids:
                report.problems.append(f"{len(orphans)} vectors have no catalog row (e.g. id {min(orphans)})")
            if missing := row_ids - ids:
                report.problems.append(f"{len(missing)} catalog items have no vector (e.g. id {min(missing)})")
            empty = list(s.scalars(select(File.path).where(~File.items.any())))
            if empty:
                report.problems.append(f"{len(empty)} files have no items (e.g. {empty[0]})")
            gone, changed = [], []
            for fid, path, size, mtime in s.execute(select(File.id, File.path, File.size, File.mtime_ns)):
                try:
                    st = os.stat(path)
                except OSError:
                    gone.append((fid, path))
                    continue
                if (st.st_size, st.st_mtime_ns) != (size, mtime):
                    changed.append(path)
            if gone:
                report.problems.append(f"{len(gone)} indexed files no longer exist (e.g. {gone[0][1]})")
            if changed:
                report.warnings.append(f"{len(changed)} files changed since indexing (e.g. {changed[0]}); run `xmr index`")
            if repair and report.problems:
                removed, dropped = self.repair_vectors(s)
                if removed:
                    report.repaired.append(f"removed {removed} vectors without rows")
                if dropped:
                    report.repaired.append(f"dropped {dropped} files whose vectors were missing (the next `xmr index` re-encodes them)")
                gone_ids = [fid for fid, _ in gone]
                empty_ids = list(s.scalars(select(File.id).where(~File.items.any())))
                if gone_ids or empty_ids:
                    drop_files(s, vecs, gone_ids + empty_ids)
                    report.repaired.append(f"removed {len(gone_ids)} missing and {len(empty_ids)} empty files from the catalog")
                if vecs is not None and len(np.unique(vecs.ids())) != vecs.ntotal:
                    report.warnings.append("duplicate ids remain; rebuild the library with a fresh `xmr index`")
                self.save_and_commit(s)
        return report

