"""The library's storage and the protocol that keeps its parts in step.

A library is a folder holding the SQL catalog (or a `--db` URL), the FAISS index file and,
once it has sounds, the audio bridge file. A checkpoint writes a changed index under a new
name (`vectors-N.faiss`, via a temporary file and os.replace) and a refitted bridge under its
hash (`bridge-HASH.safetensors`); the catalog commit that records those names makes them
current, together with the rows they match. Until that commit the previous files stay the
library's, so a crash at any moment leaves the last commit whole. Readers open only the files
the catalog names; files that no commit names were left by a run that died, and the next
writer (holding the write lock) removes them.
"""

from __future__ import annotations

import re
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from indexer import catalog_version, face_catalog, locks, ownership  # noqa: F401 - face_catalog: its tables join the catalog's
from indexer.catalog import File, Item, Meta, chunked, drop_files, get_meta, init_schema, make_engine, set_meta
from indexer.kinds import all_kinds
from indexer.full_vectors import META as FULL_META, FullVectors
from indexer.refine import Refiner, wants_refine
from indexer.vectors import DEFAULT_FACTORY, MMAP_MIN_BYTES, VectorIndex, full_factory, is_ivf
from retrieval.errors import LibraryError
from retrieval.paths import BRIDGE_FILE, DB_FILE, INDEX_FILE, THUMBNAIL_DIR

_THUMBNAIL_NAME = re.compile(r"([0-9a-f]{40})(?:-t\d+)?-\d+\.jpg")  # hash, a video moment in ms, size
# Anything else matching these is left over from a run that died before its commit.
_INDEX_NAME = re.compile(r"vectors(?:-(\d+))?\.faiss")
_BRIDGE_NAME = re.compile(r"bridge(?:-[0-9a-f]+)?\.safetensors")
_TEMP_NAME = re.compile(r"\.(?:vectors|faces).*\.tmp|bridge.*\.tmp")
_EXTRA_NAME = re.compile(r"vectors-m[0-9a-f]{8}-\d+\.faiss")  # a further model's (indexer.extra_models)
_FACE_NAME = re.compile(r"faces-\d+\.faiss")  # the faces' (indexer.face_index)
_FULL_NAME = re.compile(r"full-\d+\.(?:vec|ids)")  # full-precision vectors (indexer.full_vectors)
EXTRA_META = "extra_models"
FACE_META = "face_index"

FileSignature = tuple[int, int, int]


def file_signature(path: Path) -> FileSignature | None:
    """(inode, size, mtime) of a file, None when it is missing: changes when a writer replaces it."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class Store:
    """The catalog (engine, sessions), the write lock, the current index and bridge files, the
    loaded index, and the commit that makes a writer's changes current.

    `factory` is the FAISS index of a new library (the catalog's record wins once there is one).
    `device` 'cpu' keeps searches off a GPU even when faiss has one. `slot`: a read-only view
    whose index is that further model's (indexer.extra_models), not the main one's.
    """

    def __init__(self, path: Path, *, db: str | None = None, create: bool = False, device: str = "auto",
                 factory: str | None = None, slot: str | None = None) -> None:
        self.path = path
        self.slot = slot
        self.created_folder = create and not path.exists()
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            raise LibraryError(f"no library at {path}; run `xmr index PATH` to create one")
        self.db_url = db or f"sqlite:///{path / DB_FILE}"
        self.engine = make_engine(self.db_url)
        self.created = False  # this view made the catalog: a failed first command removes it
        self.commits = 0
        self.device = device
        self._vectors: VectorIndex | None = None
        self.full: FullVectors | None = None  # a writer's full-precision vectors (indexer.full_vectors)
        self.remote: Any = None  # stands in for the loaded index on the query side (retrieval.sharded)
        self._pending_bridge_file: str | None = None
        self._superseded: list[Path] = []  # files to delete once the next commit is done
        try:
            self.created = init_schema(self.engine, create=create)
            self.Session = sessionmaker(self.engine, expire_on_commit=False)
            with self.Session() as s:
                ownership.check_owner(s, self.engine, path)
                self._read_file_names(s)
                self.factory: str = get_meta(s, "factory") or full_factory(factory or DEFAULT_FACTORY)
                self.tuning: dict[str, Any] | None = get_meta(s, "index_tuning")
                if slot is not None:
                    self.factory, self.tuning = self._slot_factory, None
        except BaseException:
            self.discard_if_unused()
            raise

    # -- which files are current -----------------------------------------------------------

    def _read_file_names(self, session: Session) -> None:
        """Which index and bridge files the last commit made current (older libraries: fixed names)."""
        self._index_file: str = get_meta(session, "index_file") or INDEX_FILE
        self._bridge_file: str = get_meta(session, "bridge_file") or BRIDGE_FILE
        if self.slot is not None:
            entry = (get_meta(session, EXTRA_META) or {}).get(self.slot)
            if entry is None:
                raise LibraryError("that model's vectors were dropped from this library")
            self._index_file = entry.get("index_file") or f"vectors-{self.slot}-0.faiss"
            self._slot_factory: str = entry.get("factory") or "IDMap2,Flat"

    def refresh(self, session: Session | None = None) -> bool:
        """Re-read the committed file names and index settings (a writer may have committed since
        this view was opened); True when the index file changed. Given a `session`, they are read
        in it, so that the rows it reads next belong to the same commit as the files."""
        before = self._index_file
        with nullcontext(session) if session is not None else self.Session() as s:
            self._read_file_names(s)
            self.factory = get_meta(s, "factory") or self.factory
            self.tuning = get_meta(s, "index_tuning")
            if self.slot is not None:
                self.factory, self.tuning = self._slot_factory, None
        return self._index_file != before

    @property
    def index_path(self) -> Path:
        """The current (committed) index file."""
        return self.path / self._index_file

    @property
    def bridge_path(self) -> Path:
        """The current (committed) bridge file."""
        return self.path / self._bridge_file

    @property
    def bridge_name(self) -> str:
        """The bridge file this writer's next commit names (a staged one), else the committed one."""
        return self._pending_bridge_file or self._bridge_file

    def stray_files(self) -> list[Path]:
        """Index, bridge and temporary files that no commit names: left by an interrupted run."""
        keep = {self._index_file, self._bridge_file, self._pending_bridge_file}
        with self.Session() as s:
            keep |= {e.get("index_file") for e in (get_meta(s, EXTRA_META) or {}).values()}
            keep.add((get_meta(s, FACE_META) or {}).get("index_file"))
            full = (get_meta(s, FULL_META) or {}).get("name")
            keep |= {f"{full}.vec", f"{full}.ids"} if full else set()
        return sorted(
            p for p in self.path.iterdir()
            if p.name not in keep
            and any(r.fullmatch(p.name) for r in (_INDEX_NAME, _BRIDGE_NAME, _TEMP_NAME, _EXTRA_NAME, _FACE_NAME, _FULL_NAME))
        )

    def _next_index_file(self) -> str:
        m = _INDEX_NAME.fullmatch(self._index_file)
        return f"vectors-{int(m.group(1) or 0) + 1 if m else 1}.faiss"

    # -- the loaded index ------------------------------------------------------------------

    def vectors(self, *, writable: bool = False, create_dim: int | None = None) -> VectorIndex | None:
        """The FAISS index, loaded from the committed file on first use (None when there is none).

        Readers of a large index map it (mmap) instead of reading it; a writer (`writable`, or
        `create_dim`: make an empty index of that dimension when there is none) gets a private
        in-memory copy it can change and save.
        """
        writable = writable or create_dim is not None
        if self.remote is not None and not writable:
            return self.remote.follow(self._index_file)
        if self._vectors is not None and writable and self._vectors.mmapped:
            self._vectors = None
        if self._vectors is None:
            self._vectors = self._load_vectors(writable)
            if self._vectors is None and create_dim is not None:
                if is_ivf(self.factory):  # the trained index file is gone: start exact again
                    self.factory = full_factory(DEFAULT_FACTORY)
                self._vectors = VectorIndex.create(create_dim, self.factory.split(",", 1)[1])
            if self._vectors is not None and not writable and self.slot is None and wants_refine(self.factory):
                with self.Session() as s:
                    full = FullVectors.of(self.path, s, self._vectors.d)
                self._vectors.refine = Refiner(full) if full is not None and full.complete else None
            if self._vectors is not None and self.device != "cpu":
                # Searches run on a GPU copy when faiss has GPUs (use_gpu checks; CPU otherwise).
                self._vectors.use_gpu(int(self.device.partition(":")[2] or 0))
        if self._vectors is not None and writable:  # also an index this view first loaded to read
            self._keep_full(self._vectors)
        return self._vectors

    def forget_loaded(self) -> None:
        """Drop the index in memory; the next use reads the committed file."""
        self._vectors = self.full = None

    @property
    def loaded_vectors(self) -> VectorIndex | None:
        """The index in memory, if any, without loading it."""
        return self._vectors

    def replace_vectors(self, vecs: VectorIndex, factory: str, tuning: dict[str, Any] | None) -> None:
        """A rebuilt or retuned index becomes this writer's (saved by the next commit)."""
        self._vectors, self.factory, self.tuning = vecs, factory, tuning
        vecs.also_add = self.full.append if self.full is not None else None
        if self.full is not None and self.full.complete and wants_refine(factory) and vecs.refine is None:
            vecs.refine = Refiner(self.full)

    def _keep_full(self, vecs: VectorIndex) -> None:
        """A writer's index: what it adds is also kept at full precision (indexer.full_vectors)."""
        if self.slot is None and self.full is None:
            with self.Session() as s:
                self.full = FullVectors.begin(self.path, s, vecs)
        vecs.also_add = self.full.append if self.full is not None else None

    def _load_vectors(self, writable: bool) -> VectorIndex | None:
        """The committed index file, read. A writer may commit a new file and delete this view's
        between our reading its name and opening it: then the new name is read and opened."""
        for _ in range(5):
            path = self.index_path
            sig = file_signature(path)
            if sig is None:
                if self.refresh():
                    continue
                return None
            try:
                vecs = VectorIndex.load(path, self.factory, mmap=not writable and sig[1] >= MMAP_MIN_BYTES)
            except LibraryError:
                if path.exists() or not self.refresh():
                    raise
                continue
            vecs.disk_signature = sig  # what `reopen` compares
            self.apply_tuning(vecs)
            return vecs
        raise LibraryError(f"the vector index of {self.path} keeps changing; try again")

    def apply_tuning(self, vecs: VectorIndex) -> None:
        """The recorded search parameter (nprobe) onto a loaded IVF index."""
        if (self.tuning or {}).get("nprobe") and vecs.is_ivf:
            vecs.nprobe = self.tuning["nprobe"]

    def reopen(self) -> "Store":
        """A fresh view of the library as it is on disk now, keeping the loaded index when its
        file did not change. Readers call this after a writer committed."""
        new = Store(self.path, db=self.db_url, device=self.device, slot=self.slot)
        new.remote = self.remote
        vecs = self._vectors
        if vecs is not None and vecs.disk_signature == file_signature(new.index_path) and new.factory == self.factory:
            new._vectors = vecs
            new.apply_tuning(vecs)
        return new

    def disk_signature(self) -> tuple[Any, ...]:
        """Changes whenever a writer saves the index, commits to a SQLite catalog or refits the
        bridge: what a long-lived reader (the server) compares to know it must reopen."""
        files = [self.index_path, self.bridge_path]
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            db = Path(self.engine.url.database)
            files += [db, db.with_name(db.name + "-wal")]
        sig: list[Any] = [file_signature(f) for f in files]
        if self.engine.dialect.name != "sqlite":  # another database: ask it
            with self.engine.connect() as conn:
                sig.append(tuple(conn.execute(select(func.count(File.id), func.max(File.indexed_at))).one()))
                sig.append(tuple(conn.execute(select(Meta.value).where(Meta.key.in_(["index_file", "bridge_file"]))).scalars()))
        return tuple(sig)

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def write_lock(self, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """One writer per catalog (indexer.locks); a second gets LibraryLockedError instead of
        corrupting anything, or with `wait` queues behind the first (`on_wait` hears why it
        waits). The holder starts from the latest commit (`begin_write`)."""
        with locks.write_lock(self.engine, self.path, wait, on_wait):
            self.begin_write()
            yield

    def begin_write(self) -> None:
        """Under the write lock, before changing anything: catch up with what other writers
        committed since this view was opened, and remove files left by runs that died before
        their commit (only the lock holder may: no other process writes them)."""
        with self.Session() as s:  # the catalog is this folder's (checked again under the lock)
            ownership.check_owner(s, self.engine, self.path)
            ownership.claim(s, self.path)
            s.commit()
        loaded = self._vectors
        self.refresh()
        if loaded is not None and loaded.disk_signature != file_signature(self.index_path):
            self._vectors = None  # another writer committed a newer index
        for p in self.stray_files():
            p.unlink(missing_ok=True)

    def stage_bridge(self, session: Session, name: str, save: Callable[[Path], None]) -> None:
        """Write a bridge file under `name`; it becomes current when the caller commits."""
        save(self.path / name)
        set_meta(session, "bridge_file", name)
        if name != self._bridge_file:
            self._superseded.append(self.bridge_path)
        self._pending_bridge_file = name

    def drop_files(self, session: Session, file_ids: Sequence[int]) -> None:
        """Remove files, their items and the items' vectors from the loaded index (if any)."""
        drop_files(session, self._vectors, list(file_ids))

    def commit(self, session: Session) -> None:
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
        if self.full is not None and (self.full.pending or not get_meta(session, FULL_META)):
            self.full.stage(session)
        session.commit()
        if self.full is not None:
            self.full.committed_now()
        self.commits += 1
        if new_index is not None and vecs is not None:
            if new_index != self._index_file:
                self._superseded.append(self.index_path)
            self._index_file = new_index
            vecs.dirty = False
            vecs.disk_signature = file_signature(self.index_path)
        if self._pending_bridge_file is not None:
            self._bridge_file, self._pending_bridge_file = self._pending_bridge_file, None
        current = {self.index_path, self.bridge_path}
        for p in self._superseded:
            if p not in current:
                p.unlink(missing_ok=True)
        self._superseded.clear()

    def keep_counts(self, wait: bool = False) -> None:
        """After an index run: files and items counted for `xmr stats` (indexer.catalog_version)."""
        with self.write_lock(wait), self.Session() as s:
            catalog_version.refresh(s)

    def discard_if_unused(self) -> None:
        """After a failed first command: remove the library this view created, if nothing was
        committed to it (see indexer.ownership)."""
        if self.created and self.commits == 0:
            ownership.discard(self.engine, self.path, created_folder=self.created_folder)
            self.created = False
        elif self.created_folder and not any(self.path.iterdir()):
            self.path.rmdir()

    def forget_uncommitted(self) -> None:
        """After a rollback: drop the in-memory index and the staged bridge, so the next use reads
        the committed ones. Files written for the lost commit stay until the next writer removes them."""
        if self.full is not None:
            self.full.cut_uncommitted()
        self._vectors = self.full = None
        self._pending_bridge_file = None
        self._superseded.clear()
        self.refresh()

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
        file_ids: list[int] = []
        if missing:
            # Whole files go, so their other vectors do not become orphans.
            file_ids = list({f for part in chunked(sorted(missing))
                             for f in session.scalars(select(Item.file_id).where(Item.id.in_(part)))})
            self.drop_files(session, file_ids)
        return len(orphans), len(file_ids)

    def prune_thumbnails(self) -> int:
        """Delete cached thumbnails (made by `xmr serve`) of files no longer in the library: they
        would keep deleted photos visible. Returns how many went."""
        folder = self.path / THUMBNAIL_DIR
        if not folder.is_dir():
            return 0
        kinds = [k.name for k in all_kinds() if k.has_thumbnail]
        with self.Session() as s:
            keep = {h[:40] for h in s.scalars(select(File.phash).where(File.modality.in_(kinds)))}
        pruned = 0
        for p in folder.iterdir():
            m = _THUMBNAIL_NAME.fullmatch(p.name)  # never a temporary file a server is writing
            if m and m.group(1) not in keep:
                p.unlink(missing_ok=True)
                pruned += 1
        return pruned
