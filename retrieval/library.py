"""A library: a directory holding the SQL catalog and the FAISS index, bound to one encoder."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from indexer.catalog import AudioRaw, File, Item, Meta, drop_files, get_meta, init_schema, make_engine, set_meta
from indexer.autoindex import DEFAULT_RECALL
from indexer.vectors import DEFAULT_FACTORY, MMAP_MIN_BYTES, VectorIndex, full_factory, is_ivf
from retrieval.encoders import DEFAULT_MODEL, DEFAULT_PRETRAINED, Encoder, EncoderSpec, load_encoder
from retrieval.errors import (
    EncoderMismatchError,
    LibraryError,
    LibraryLockedError,
    ModelLoadError,
    NotFoundError,
    UsageError,
)
from retrieval.paths import BRIDGE_FILE, DB_FILE, INDEX_FILE, LOCK_FILE, THUMBNAIL_DIR, default_library_dir, display_path
from retrieval.query import Query
from retrieval.search import MODALITIES, Hit, search_vectors

log = logging.getLogger(__name__)
_THUMBNAIL_NAME = re.compile(r"([0-9a-f]{40})-\d+\.jpg")
# Index and bridge files are written under new names; the catalog commit that names them makes
# them current. Anything else matching these is left over from a run that died before its commit.
_INDEX_NAME = re.compile(r"vectors(?:-(\d+))?\.faiss")
_BRIDGE_NAME = re.compile(r"bridge(?:-[0-9a-f]+)?\.safetensors")
_TEMP_NAME = re.compile(r"\.vectors.*\.tmp|bridge.*\.tmp")

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


def _unpack(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored CLAP vectors (float32 bytes) as an (n, dim) array."""
    return np.stack([np.frombuffer(b, dtype=np.float32) for b in blobs]) if blobs else np.zeros((0, 0), np.float32)


def _raw_vectors(session: Session) -> np.ndarray:
    return _unpack(list(session.scalars(select(AudioRaw.vector))))


def _same_weights(recorded: dict[str, Any] | None, ident: dict[str, Any], what: str) -> None:
    """Refuse an encoder whose weights differ from the ones that made the library's vectors."""
    if recorded is None:
        return
    for key in ("dim", "weights_sha256"):
        if recorded.get(key) != ident.get(key):
            raise EncoderMismatchError(
                f"the weights of {what} changed since this library was built "
                f"({key}: {recorded.get(key)} -> {ident.get(key)}); re-index into a new --library"
            )


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of a file, None when it is missing: changes when a writer replaces it."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


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
        audio_model: str | None = None,
        recall: float | None = None,
        max_memory: int | None = None,
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
        self._audio_encoder: Any = None
        self._audio_error: ModelLoadError | None = None
        self._audio_lock = threading.Lock()
        self._bridge: Any = None
        self._calibration_cache: dict[tuple[str, int], np.ndarray] = {}
        self._pending_bridge_file: str | None = None
        self._superseded: list[Path] = []  # files to delete once the next commit is done

        with self.Session() as s:
            self._read_file_names(s)
            recorded = get_meta(s, "encoder")
            self.recorded_audio: dict[str, Any] | None = get_meta(s, "audio_encoder")
            self.factory: str = get_meta(s, "factory") or full_factory(factory or DEFAULT_FACTORY)
            self.policy: dict[str, Any] = get_meta(s, "index_policy") or {
                "auto": factory is None, "recall": DEFAULT_RECALL, "max_memory": None,
            }
            self.tuning: dict[str, Any] | None = get_meta(s, "index_tuning")
        if recall is not None:
            if not 0.0 < recall <= 1.0:
                raise UsageError(f"--recall must be in (0, 1], got {recall}")
            self.policy["recall"] = recall
        if max_memory is not None:
            if max_memory <= 0:
                raise UsageError("--max-memory must be positive")
            self.policy["max_memory"] = max_memory
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
        self.audio_model = self._resolve_audio_model(audio_model)

    def _resolve_audio_model(self, asked: str | None) -> str:
        from retrieval.encoders.clap import resolve_audio_model

        rec = (self.recorded_audio or {}).get("audio_model")
        if asked is not None and rec is not None and resolve_audio_model(asked) != rec:
            raise EncoderMismatchError(
                f"this library's sounds were indexed with {rec}, not {resolve_audio_model(asked)}; "
                "drop --audio-model to use the library's own, or use another --library"
            )
        return rec or resolve_audio_model(asked)

    # -- parts -----------------------------------------------------------------------------

    def _read_file_names(self, session: Session) -> None:
        """Which index and bridge files the last commit made current (older libraries: fixed names)."""
        self._index_file: str = get_meta(session, "index_file") or INDEX_FILE
        self._bridge_file: str = get_meta(session, "bridge_file") or BRIDGE_FILE

    def _refresh_file_names(self) -> bool:
        """Re-read the committed file names (a writer may have committed since this view was
        opened); True when the index file changed."""
        before = self._index_file
        with self.Session() as s:
            self._read_file_names(s)
            self.factory = get_meta(s, "factory") or self.factory
            self.tuning = get_meta(s, "index_tuning")
        return self._index_file != before

    @property
    def index_path(self) -> Path:
        """The current (committed) index file."""
        return self.path / self._index_file

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use and checked against the library's record."""
        if self._encoder is None:
            enc = load_encoder(self.spec, self.device)
            self._check_identity(enc)
            self._encoder = enc
        return self._encoder

    def _check_identity(self, enc: Encoder) -> None:
        _same_weights(self.recorded_identity, enc.identity(), self.spec.describe())

    @property
    def audio_encoder(self) -> Any:
        """The CLAP encoder, loaded on first use (thread-safe: decode workers may ask first).

        A load failure is remembered, so a folder of sounds reports it once per file
        without retrying a download for each.
        """
        with self._audio_lock:
            if self._audio_encoder is None:
                if self._audio_error is not None:
                    raise self._audio_error
                from retrieval.encoders.clap import ClapAudioEncoder

                try:
                    enc = ClapAudioEncoder(self.audio_model, self.device)
                except ModelLoadError as e:
                    self._audio_error = e
                    raise
                _same_weights(self.recorded_audio, enc.identity(), f"the audio model {self.audio_model}")
                self._audio_encoder = enc
            return self._audio_encoder

    def record_audio_encoder(self, session: Session) -> None:
        if self.recorded_audio is None and self._audio_encoder is not None:
            self.recorded_audio = self._audio_encoder.identity()
            set_meta(session, "audio_encoder", self.recorded_audio)

    # -- the bridge from CLAP into this library's CLIP space ---------------------------------

    @property
    def bridge_path(self) -> Path:
        """The current (committed) bridge file."""
        return self.path / self._bridge_file

    def bridge(self) -> Any:
        """The library's bridge (None before the first sound is indexed), checked against its encoders."""
        from retrieval.bridge import Bridge

        if self._bridge is None and self.recorded_audio is not None and not self.bridge_path.exists():
            self._refresh_file_names()  # a refit may have replaced the file since this view was opened
        if self._bridge is None and self.bridge_path.exists():
            self._bridge = Bridge.load(self.bridge_path)
            if self.recorded_audio is not None and self.recorded_identity is not None:
                self._bridge.check_pair(self.recorded_audio, self.recorded_identity)
        return self._bridge

    def fit_bridge(
        self,
        session: Session,
        *,
        captions: str | os.PathLike[str] | None = None,
        method: str = "auto",
        extra_audio: np.ndarray | None = None,
        progress: bool | None = None,
    ) -> Any:
        """Fit and save a bridge for this library's CLIP encoder and CLAP model, then move the
        stored sounds to it. The caller holds the write lock and commits."""
        from retrieval.bridge import embed_caption_pairs, fit_bridge, read_captions

        texts = read_captions(captions)
        self.record_encoder(session)
        clap, clip = self.audio_encoder, self.encoder
        self.record_audio_encoder(session)
        x, y = embed_caption_pairs(clap, clip, texts, self.recorded_audio, self.recorded_identity, progress)
        parts = [a for a in (_raw_vectors(session), extra_audio) if a is not None and len(a)]
        manifest = {
            "clap": self.recorded_audio,
            "clip": self.recorded_identity,
            "captions": {
                "count": len(texts),
                "source": str(captions) if captions else "xmr default corpus",
                "sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
            },
        }
        audio = np.concatenate([np.asarray(a, np.float32) for a in parts]) if parts else None
        bridge = fit_bridge(x, y, method=method, audio=audio, manifest=manifest)
        self.install_bridge(session, bridge)
        return bridge

    def install_bridge(self, session: Session, bridge: Any) -> int:
        """Make `bridge` the library's: save it, re-project every stored sound, record it.
        Returns the number of audio items moved. The caller holds the write lock and commits."""
        if self.recorded_audio is not None and self.recorded_identity is not None:
            bridge.check_pair(self.recorded_audio, self.recorded_identity)
        name = f"bridge-{bridge.sha256[:16]}.safetensors"
        bridge.save(self.path / name)  # current only once the caller commits
        set_meta(session, "bridge_file", name)
        if name != self._bridge_file:
            self._superseded.append(self.bridge_path)
        self._pending_bridge_file = name
        self._bridge = bridge
        return self.sync_bridge(session, force=True)

    def sync_bridge(self, session: Session, force: bool = False) -> int:
        """Stored audio vectors follow the bridge file. A crash between saving a new bridge and
        committing leaves the recorded bridge hash behind; the next writer re-projects."""
        bridge = self.bridge()
        if bridge is None:
            return 0
        if not force and get_meta(session, "bridge_sha256") == bridge.sha256:
            return 0
        moved = 0
        vecs = self.vectors(create=True)
        rows = session.execute(select(AudioRaw.item_id, AudioRaw.vector)).all()
        for i in range(0, len(rows), 4096):
            part = rows[i : i + 4096]
            ids = [r[0] for r in part]
            raw = _unpack([r[1] for r in part])
            vecs.remove(ids)
            vecs.add(bridge.map_audio(raw), ids)
            moved += len(ids)
        set_meta(session, "bridge_sha256", bridge.sha256)
        set_meta(session, "bridge", bridge.describe())
        return moved

    def embed_audio_file(self, path: str) -> np.ndarray:
        """A sound file as a query: CLAP vectors of its windows, averaged, bridged into CLIP space.
        An unreadable file raises DecodeError (the reason)."""
        from indexer.audio import audio_windows

        bridge = self.bridge()
        if bridge is None:
            raise UsageError("this library has no sounds yet, so no audio bridge: index some audio first, or run `xmr bridge fit`")
        enc = self.audio_encoder
        feats = [enc.features(w.samples) for w in audio_windows(path, enc.sampling_rate, enc.window_samples)]
        raw = np.concatenate([enc.encode_audio(feats[i : i + 32]) for i in range(0, len(feats), 32)]).mean(0)
        return bridge.map_audio(raw / max(float(np.linalg.norm(raw)), 1e-12))[0]

    def vectors(self, create: bool = False, writable: bool = False) -> VectorIndex | None:
        """The FAISS index, loaded from disk on first use (None when there is none yet).

        Readers of a large index map it (mmap) instead of reading it; a writer (`create` or
        `writable`) gets a private in-memory copy it can change and save.
        """
        writable = writable or create
        if self._vectors is not None and writable and self._vectors.mmapped:
            self._vectors = None
        if self._vectors is None:
            self._vectors = self._load_vectors(writable)
            if self._vectors is None and create:
                if is_ivf(self.factory):  # the trained index file is gone: start exact again
                    self.factory = full_factory(DEFAULT_FACTORY)
                self._vectors = VectorIndex.create(self.encoder.dim, self.factory.split(",", 1)[1])
            if self._vectors is not None and self.device != "cpu":
                # Searches run on a GPU copy when faiss has GPUs (use_gpu checks; CPU otherwise).
                self._vectors.use_gpu(int(self.device.partition(":")[2] or 0))
        return self._vectors

    def _load_vectors(self, writable: bool) -> VectorIndex | None:
        """The committed index file, read. A writer may commit a new file and delete this view's
        between our reading its name and opening it: then the new name is read and opened."""
        for _ in range(5):
            path = self.index_path
            sig = _file_signature(path)
            if sig is None:
                if self._refresh_file_names():
                    continue
                return None
            try:
                vecs = VectorIndex.load(path, self.factory, mmap=not writable and sig[1] >= MMAP_MIN_BYTES)
            except LibraryError:
                if path.exists() or not self._refresh_file_names():
                    raise
                continue
            vecs.disk_signature = sig  # what `reopen` compares
            self._apply_tuning(vecs)
            return vecs
        raise LibraryError(f"the vector index of {self.path} keeps changing; try again")

    def disk_signature(self) -> tuple[Any, ...]:
        """Changes whenever a writer saves the index, commits to a SQLite catalog or refits the
        bridge: what a long-lived reader (the server) compares to know it must reopen."""
        files = [self.index_path, self.bridge_path]
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            db = Path(self.engine.url.database)
            files += [db, db.with_name(db.name + "-wal")]
        sig: list[Any] = [_file_signature(f) for f in files]
        if self.engine.dialect.name != "sqlite":  # another database: ask it
            with self.engine.connect() as conn:
                sig.append(tuple(conn.execute(select(func.count(File.id), func.max(File.indexed_at))).one()))
                sig.append(tuple(conn.execute(select(Meta.value).where(Meta.key.in_(["index_file", "bridge_file"]))).scalars()))
        return tuple(sig)

    def reopen(self) -> "Library":
        """A fresh view of this library as it is on disk now (catalog metadata, bridge, index)
        that keeps the models already loaded here; the index is reused when its file did not
        change. Readers call this after a writer committed."""
        try:
            new = Library(self.path, db=self.db_url, device=self.device, encoder=self._encoder)
        except EncoderMismatchError:  # the library was rebuilt with another model
            new = Library(self.path, db=self.db_url, device=self.device)
        index_sig = _file_signature(new.index_path)
        if new.audio_model == self.audio_model:
            new._audio_encoder = self._audio_encoder
        vecs = self._vectors
        if vecs is not None and vecs.disk_signature == index_sig and new.factory == self.factory:
            new._vectors = vecs
            new._apply_tuning(vecs)
        return new

    def _apply_tuning(self, vecs: VectorIndex) -> None:
        """The recorded search parameter (nprobe) onto a loaded IVF index."""
        if (self.tuning or {}).get("nprobe") and vecs.is_ivf:
            vecs.nprobe = self.tuning["nprobe"]

    def forget_uncommitted(self) -> None:
        """After a rollback: drop the in-memory index and bridge, so the next use reads the
        committed ones. Files written for the lost commit stay until the next writer removes them."""
        self._vectors = None
        self._bridge = None
        self._pending_bridge_file = None
        self._superseded.clear()
        self._refresh_file_names()

    def begin_write(self) -> None:
        """Under the write lock, before changing anything: catch up with what other writers
        committed since this view was opened, and remove files left by runs that died before
        their commit (only the lock holder may: no other process writes them)."""
        loaded = self._vectors
        self._refresh_file_names()
        if loaded is not None and loaded.disk_signature != _file_signature(self.index_path):
            self._vectors = None  # another writer committed a newer index
        if self._bridge is not None and self._pending_bridge_file is None:
            self._bridge = None
        for p in self.stray_files():
            p.unlink(missing_ok=True)

    def stray_files(self) -> list[Path]:
        """Index, bridge and temporary files that no commit names: left by an interrupted run."""
        keep = {self._index_file, self._bridge_file, self._pending_bridge_file}
        return sorted(
            p for p in self.path.iterdir()
            if p.name not in keep and any(r.fullmatch(p.name) for r in (_INDEX_NAME, _BRIDGE_NAME, _TEMP_NAME))
        )

    def _next_index_file(self) -> str:
        m = _INDEX_NAME.fullmatch(self._index_file)
        return f"vectors-{int(m.group(1) or 0) + 1 if m else 1}.faiss"

    def record_encoder(self, session: Session) -> None:
        if self.recorded_identity is None:
            self.recorded_identity = self.encoder.identity()
            set_meta(session, "encoder", self.recorded_identity)
            set_meta(session, "factory", self.factory)
        if get_meta(session, "index_policy") != self.policy:
            set_meta(session, "index_policy", self.policy)

    def maybe_reindex(self, session: Session, progress: bool | None = None) -> dict[str, Any] | None:
        """Move to the index the policy wants for the current size, once, when a threshold is
        crossed (or re-tune when the recall target changed). Returns the new tuning, if any."""
        from indexer import autoindex

        vecs = self._vectors
        if not self.policy.get("auto") or vecs is None or vecs.ntotal == 0:
            return None
        target = float(self.policy.get("recall") or DEFAULT_RECALL)
        want = autoindex.wants_rebuild(self.factory, vecs.ntotal, vecs.d, self.policy, self.tuning)
        retune = want is None and vecs.is_ivf and (self.tuning or {}).get("target") != target
        if want is None and not retune:
            return None
        from tqdm import tqdm

        ids, xb = vecs.all_vectors()
        if retune:
            tuning = {**(self.tuning or {}), **autoindex.tune(vecs, xb, ids, target)}
            new = vecs
        else:
            bar = tqdm(total=len(ids), unit="vector", desc=f"building {want} index",
                       disable=(not progress) if progress is not None else None, file=sys.stderr)
            try:
                new, tuning = autoindex.build(want, ids, xb, target, progress=bar.update)
            finally:
                bar.close()
            self.factory = full_factory(want)
        self._vectors = new
        self.tuning = tuning
        set_meta(session, "factory", self.factory)
        set_meta(session, "index_tuning", tuning)
        set_meta(session, "index_policy", self.policy)
        log.info("vector index: %s, tuning %s", self.factory, tuning)
        return tuning

    def save_and_commit(self, session: Session) -> None:
        """Checkpoint: a changed index is saved under a new name, and the catalog commit that
        records the name makes it current, together with the rows it matches. A crash at any
        moment leaves the previous commit's rows and files; only then are superseded files deleted.
        """
        vecs = self._vectors
        new_index = None
        if vecs is not None and (vecs.dirty or not self.index_path.exists()):
            new_index = self._next_index_file()
            vecs.save(self.path / new_index)
            set_meta(session, "index_file", new_index)
            set_meta(session, "vectors_total", vecs.ntotal)  # lets `xmr stats` skip loading FAISS
        session.commit()
        if new_index is not None:
            if new_index != self._index_file:
                self._superseded.append(self.index_path)
            self._index_file = new_index
            vecs.dirty = False
            vecs.disk_signature = _file_signature(self.index_path)
        if self._pending_bridge_file is not None:
            self._bridge_file, self._pending_bridge_file = self._pending_bridge_file, None
        current = {self.index_path, self.bridge_path}
        for p in self._superseded:
            if p not in current:
                p.unlink(missing_ok=True)
        self._superseded.clear()

    @contextmanager
    def write_lock(self, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """One writer at a time; a second gets LibraryLockedError instead of corrupting anything,
        or with `wait` queues behind the first (`on_wait` hears why it waits).
        The holder starts from the latest commit (`begin_write`)."""
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
                who = f"another xmr process{f' (pid {other})' if other else ''}"
                if not wait:
                    raise LibraryLockedError(f"{who} is writing to {self.path}; wait for it to finish") from None
                if on_wait is not None:
                    on_wait(f"waiting for {who} to finish writing to {self.path}")
                # The kernel queues us and hands the lock over when the holder exits, even by
                # SIGKILL; Ctrl-C still interrupts the wait.
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            self.begin_write()
            yield
        finally:
            os.close(fd)

    def prune_thumbnails(self) -> int:
        """Delete cached thumbnails (made by `xmr serve`) of pictures no longer in the library:
        they would keep deleted photos visible. Returns how many went."""
        folder = self.path / THUMBNAIL_DIR
        if not folder.is_dir():
            return 0
        with self.Session() as s:
            keep = {h[:40] for h in s.scalars(select(File.phash).where(File.modality == "image"))}
        pruned = 0
        for p in folder.iterdir():
            m = _THUMBNAIL_NAME.fullmatch(p.name)  # never a temporary file a server is writing
            if m and m.group(1) not in keep:
                p.unlink(missing_ok=True)
                pruned += 1
        return pruned

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
        """Nearest items to a Query (or plain text, or a ready unit vector), best first.

        With several modalities in the library and no `modality` filter, each modality is
        searched on its own and the lists are merged by calibrated score (see `_calibrate`).
        """
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
            vector = q.embed(lambda: self.encoder, audio=self.embed_audio_file)
        vecs = self.vectors()
        if vecs is None:
            return []
        with self.Session() as s:
            present = list(s.scalars(select(Item.modality).distinct()))
            if modality is not None or len(present) < 2:
                return search_vectors(s, vecs, vector, k, modality)
            hits = [h for m in sorted(present) for h in self._calibrate(s, m, vector, search_vectors(s, vecs, vector, k, m))]
        hits.sort(key=lambda h: h.calibrated if h.calibrated is not None else h.score, reverse=True)
        return hits[:k]

    def item(self, item_id: int) -> dict[str, Any]:
        """One item with its file: what a result links to. NotFoundError when it is not there."""
        with self.Session() as s:
            row = s.execute(select(Item, File).join(File).where(Item.id == int(item_id))).first()
            if row is None:
                raise NotFoundError(f"no item {item_id} in this library")
            item, f = row
            return {
                "item_id": item.id, "path": f.path, "modality": item.modality,
                "chunk": item.chunk if item.modality != "image" else None, "snippet": item.snippet,
                "char_start": item.char_start, "char_end": item.char_end, "start": item.start, "end": item.end,
                "file_id": f.id, "size": f.size, "mtime_ns": f.mtime_ns, "phash": f.phash,
                "indexed_at": f.indexed_at, "file_items": len(f.items),
            }

    def item_vector(self, item_id: int) -> np.ndarray:
        """An item's stored vector, unit length (NotFoundError when the index lacks it)."""
        vecs = self.vectors()
        if vecs is None or not np.isin(np.int64(item_id), vecs.ids()):
            raise NotFoundError(f"item {item_id} has no vector in the loaded index (yet); try again in a moment")
        vector = np.asarray(vecs.reconstruct(int(item_id)), np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def similar(self, item_id: int, *, k: int = 10, modality: str | None = None) -> list[Hit]:
        """More like this: the nearest items to a library item's own vector, other files only
        (the item's neighbouring windows or chunks would crowd out everything else)."""
        info = self.item(item_id)
        hits = self.search(k=k + info["file_items"], modality=modality, vector=self.item_vector(item_id))
        return [h for h in hits if h.path != info["path"]][:k]

    _CALIBRATION_SAMPLE = 512

    def _sample_ids(self, s: Session, modality: str | None) -> list[int]:
        stmt = select(Item.id).order_by(func.random()).limit(self._CALIBRATION_SAMPLE)
        return list(s.scalars(stmt if modality is None else stmt.where(Item.modality == modality)))

    def _calibrate(self, s: Session, modality: str, vector: np.ndarray, hits: list[Hit]) -> list[Hit]:
        """Make scores of different modalities comparable: z-score of each hit's cosine among
        the cosines of this query to a fixed random sample of that modality's items.

        Raw cosines are not comparable across modalities (CLIP text->text runs far higher than
        text->image, bridged sounds sit elsewhere again); "how far above this modality's usual
        score for this query" is.
        """
        key = (modality, self._vectors.ntotal if self._vectors is not None else 0)
        cache = self._calibration_cache
        sample = cache.get(key)
        if sample is None:
            ids = self._sample_ids(s, modality)
            if len(ids) < 8:  # too few for a spread: measure against the whole library instead
                ids = self._sample_ids(s, None)
            vecs = self.vectors()
            ids_arr = np.array(ids, np.int64)
            if vecs is not None and len(ids_arr):
                # A long-lived reader's index can be older than the rows it reads (a writer has
                # committed since): sample only what this index holds.
                ids_arr = ids_arr[np.isin(ids_arr, vecs.ids())]
            sample = vecs.reconstruct_many(ids_arr) if len(ids_arr) and vecs is not None else np.zeros((0, len(vector)), np.float32)
            cache[key] = sample
        if len(sample) < 2:
            for h in hits:
                h.calibrated = h.score
            return hits
        sims = sample @ vector
        mu, sd = float(sims.mean()), max(float(sims.std()), 1e-3)
        for h in hits:
            h.calibrated = (h.score - mu) / sd
        return hits

    # -- reports ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        from indexer.stats import folder_size, read_stats

        with self.engine.connect() as conn:
            st = read_stats(lambda sql: list(conn.exec_driver_sql(sql).fetchall()))
        st.pop("schema_version")
        if st["vectors"] is None or self._vectors is not None:
            vecs = self.vectors()
            st["vectors"] = vecs.ntotal if vecs is not None else 0
        return {
            "library": str(self.path),
            "database": self.engine.url.render_as_string(hide_password=True),
            **st,
            "encoder": self.recorded_identity or {**self.spec.to_dict(), "note": "not recorded yet"},
            "index_type": self.factory,
            "index_tuning": self.tuning,
            "index_policy": self.policy,
            "bridge": self._bridge_info(),
            "size_bytes": folder_size(self.path),
        }

    def _bridge_info(self) -> dict[str, Any] | None:
        try:
            bridge = self.bridge()
        except (LibraryError, EncoderMismatchError) as e:
            return {"error": str(e)}
        return None if bridge is None else bridge.describe()

    def check(self, repair: bool = False) -> CheckReport:
        """Verify rows <-> vectors <-> files; with `repair`, fix what can be fixed without a model.

        Rows and index are compared as of one commit, even while a writer is committing."""
        ctx = self.write_lock() if repair else nullcontext()
        with ctx:
            for _ in range(5):
                with self.Session() as s:
                    # The first read starts the snapshot; the index must be the file it names.
                    before = self._index_file
                    self._read_file_names(s)
                    name = self._index_file
                    if name != before:
                        self._vectors = None
                    vecs = self.vectors(writable=repair)
                    if self._index_file == name:
                        report = self._check(s, vecs, repair)
                        break
            else:
                raise LibraryError(f"{self.path} keeps changing under `xmr check`; try again")
        if repair and (pruned := self.prune_thumbnails()):
            report.repaired.append(f"removed {pruned} thumbnails of pictures no longer in the library")
        return report

    def _check(self, s: Session, vecs: VectorIndex | None, repair: bool) -> CheckReport:
        report = CheckReport()
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
        # Files that went or changed on disk are news for the next `xmr index`, not damage.
        if gone:
            report.warnings.append(
                f"{len(gone)} indexed files no longer exist (e.g. {display_path(gone[0][1])}); "
                "`xmr index` (or `check --repair`) removes them")
        if changed:
            report.warnings.append(f"{len(changed)} files changed since indexing (e.g. {display_path(changed[0])}); run `xmr index`")
        strays = self.stray_files()
        if strays and not repair:
            report.warnings.append(
                f"{len(strays)} files left by an interrupted run (e.g. {strays[0].name}); the next `xmr index` removes them")
        self._check_audio(s, report)
        if repair and (report.problems or gone):
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
            stray = s.execute(delete(AudioRaw).where(~AudioRaw.item_id.in_(select(Item.id)))).rowcount
            if stray:
                report.repaired.append(f"removed {stray} stored CLAP vectors without items")
            missing_raw = list(s.scalars(select(Item.file_id).where(Item.modality == "audio", ~Item.id.in_(select(AudioRaw.item_id)))))
            if missing_raw:
                drop_files(s, vecs, list(set(missing_raw)))
                report.repaired.append(f"dropped {len(set(missing_raw))} sound files without CLAP vectors (the next `xmr index` re-encodes them)")
            try:
                if self.bridge() is not None and self.sync_bridge(s):
                    report.repaired.append("moved the stored sounds to the current bridge")
            except (LibraryError, EncoderMismatchError):
                pass
            if vecs is not None and len(np.unique(vecs.ids())) != vecs.ntotal:
                report.warnings.append("duplicate ids remain; rebuild the library with a fresh `xmr index`")
            self.save_and_commit(s)
        return report

    def _check_audio(self, s: Session, report: CheckReport) -> None:
        n_audio = s.scalar(select(func.count(Item.id)).where(Item.modality == "audio")) or 0
        no_raw = s.scalar(
            select(func.count(Item.id)).where(Item.modality == "audio", ~Item.id.in_(select(AudioRaw.item_id)))
        ) or 0
        if no_raw:
            report.problems.append(f"{no_raw} audio items have no stored CLAP vector")
        stray = s.scalar(select(func.count(AudioRaw.item_id)).where(~AudioRaw.item_id.in_(select(Item.id)))) or 0
        if stray:
            report.problems.append(f"{stray} stored CLAP vectors have no audio item")
        if not n_audio:
            return
        try:
            bridge = self.bridge()
        except (LibraryError, EncoderMismatchError) as e:
            report.problems.append(f"audio bridge: {e}")
            return
        if bridge is None:
            report.problems.append(f"{n_audio} audio items but no bridge file ({self.bridge_path}); run `xmr bridge fit`")
        elif get_meta(s, "bridge_sha256") != bridge.sha256:
            report.problems.append("the stored sounds were projected with another bridge than the one on disk")

