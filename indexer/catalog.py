"""The SQL catalog: files, items (one item = one vector) and library metadata.

An item's primary key IS its FAISS id. Schema changes go through `MIGRATIONS`, one step per
version, so any older library can be opened by a newer xmr.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Iterator, Optional, Sequence

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    delete,
    event,
    inspect,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from indexer import words
from indexer.stats import SCHEMA_VERSION
from retrieval.errors import LibraryError, SchemaVersionError

# version N -> function that upgrades a connection from N to N + 1 (run inside one transaction).
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


def migration(version: int) -> Callable[[Callable[[Connection], None]], Callable[[Connection], None]]:
    def register(fn: Callable[[Connection], None]) -> Callable[[Connection], None]:
        MIGRATIONS[version] = fn
        return fn

    return register


class Base(DeclarativeBase):
    pass


# 64-bit on every database: sizes and nanosecond mtimes overflow 32 bits, and item ids are FAISS's
# int64 ids. SQLite's INTEGER is 64-bit already, and must stay "INTEGER" for AUTOINCREMENT.
BigInt = BigInteger().with_variant(Integer, "sqlite")


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Root(Base):
    """A folder the user asked to index; `xmr index` with no paths refreshes all of them."""

    __tablename__ = "roots"
    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    added_at: Mapped[float] = mapped_column(Float, default=time.time)
    # It was a mount point when recorded: only while something is mounted there is it the folder
    # indexed (an unmounted drive leaves an empty folder, whose files are not gone).
    mount: Mapped[Optional[bool]] = mapped_column(Boolean, nullable=True)


class File(Base):
    __tablename__ = "files"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True, index=True)
    modality: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(BigInt)
    mtime_ns: Mapped[int] = mapped_column(BigInt)
    phash: Mapped[str] = mapped_column(String(64), index=True)
    indexed_at: Mapped[float] = mapped_column(Float, default=time.time)
    # What the file says about itself (indexer.facts), for filters and the page: NULL = unknown.
    taken_at: Mapped[Optional[float]] = mapped_column(Float, nullable=True, index=True)  # EXIF date taken, epoch s
    camera_make: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    camera_model: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    lat: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    lon: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    width: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    height: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    duration: Mapped[Optional[float]] = mapped_column(Float, nullable=True)  # seconds, sounds and videos
    facts_version: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)  # how its facts were read
    # readers its settings called for that could not be had when it was indexed ("ocr,speech")
    unread: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    faces_seen: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)  # indexer.face_catalog
    items: Mapped[list["Item"]] = relationship(
        back_populates="file", cascade="all, delete-orphan", passive_deletes=True, order_by="Item.id"
    )


class Item(Base):
    """One vector: an image, a text chunk (snippet + char offsets) or an audio window (start/end s)."""

    __tablename__ = "items"
    # AUTOINCREMENT: ids of deleted items are never handed out again, so a stale vector can
    # never be mistaken for a new row.
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    file_id: Mapped[int] = mapped_column(BigInt, ForeignKey("files.id", ondelete="CASCADE"), index=True)
    modality: Mapped[str] = mapped_column(String(16), index=True)
    chunk: Mapped[int] = mapped_column(Integer, default=0)
    char_start: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    char_end: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    snippet: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    start: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    end: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    # What made its vector ("image", "text", "audio"): a video has items of two embedders, whose
    # scores are calibrated apart (retrieval.calibration).
    embedder: Mapped[str] = mapped_column(String(16), index=True)
    page: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)  # a document's page, from 1
    # How sure the reader of its words was (OCR, speech), 0..1; None for words a file holds as text.
    confidence: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    file: Mapped[File] = relationship(back_populates="items")


class Tag(Base):
    """A label given to an item by zero-shot tagging (indexer.tagging), with how sure it is."""

    __tablename__ = "tags"
    item_id: Mapped[int] = mapped_column(BigInt, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
    confidence: Mapped[float] = mapped_column(Float)


class AudioRaw(Base):
    """An audio window's own CLAP embedding, kept so a refitted bridge can re-project it
    into the CLIP space without decoding the sound again."""

    __tablename__ = "audio_raw"
    item_id: Mapped[int] = mapped_column(BigInt, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


@migration(1)
def _add_audio_raw(conn: Connection) -> None:
    AudioRaw.__table__.create(conn, checkfirst=True)


@migration(2)
def _named_index_files(conn: Connection) -> None:
    """Version 3 names the current index and bridge files in `meta` (index_file, bridge_file);
    a library without the keys still uses vectors.faiss and bridge.safetensors. No table changes,
    but an older xmr must not open it: it would not find the newer files."""


_WIDE_COLUMNS = (("roots", "id"), ("files", "id"), ("files", "size"), ("files", "mtime_ns"), ("items", "id"),
                 ("items", "file_id"), ("audio_raw", "item_id"))


@migration(3)
def _wide_integers(conn: Connection) -> None:
    """Version 4: 64-bit integers on every database (Postgres made INTEGER columns 32-bit, so a
    file's size or mtime in nanoseconds did not fit). SQLite's INTEGER is 64-bit already."""
    if conn.dialect.name != "postgresql":
        return
    for table, column in _WIDE_COLUMNS:
        conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE BIGINT")
    for table in ("roots", "files", "items"):
        conn.exec_driver_sql(f"ALTER SEQUENCE IF EXISTS {table}_id_seq AS BIGINT")


@migration(4)
def _item_embedders(conn: Connection) -> None:
    """Version 5: each item names its embedder (a video's shots and sound windows share a
    modality). Before videos, an item's embedder was its modality."""
    if "embedder" not in {c["name"] for c in inspect(conn).get_columns("items")}:
        conn.exec_driver_sql("ALTER TABLE items ADD COLUMN embedder VARCHAR(16)")
    conn.exec_driver_sql("UPDATE items SET embedder = modality WHERE embedder IS NULL")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_items_embedder ON items (embedder)")


@migration(5)
def _document_pages(conn: Connection) -> None:
    """Version 6: a document's items carry their page."""
    if "page" not in {c["name"] for c in inspect(conn).get_columns("items")}:
        conn.exec_driver_sql("ALTER TABLE items ADD COLUMN page INTEGER")


@migration(6)
def _full_text(conn: Connection) -> None:
    """Version 7: items may have words read off them (confidence), and every item's words are in
    the full-text index (indexer.words), filled here from the snippets already stored."""
    if "confidence" not in {c["name"] for c in inspect(conn).get_columns("items")}:
        conn.exec_driver_sql("ALTER TABLE items ADD COLUMN confidence FLOAT")
    words.create(conn)
    words.rebuild(conn)


_FACT_COLUMNS = (("taken_at", "FLOAT"), ("camera_make", "TEXT"), ("camera_model", "TEXT"), ("lat", "FLOAT"),
                 ("lon", "FLOAT"), ("width", "INTEGER"), ("height", "INTEGER"), ("duration", "FLOAT"),
                 ("facts_version", "INTEGER"))


@migration(7)
def _facts_and_tags(conn: Connection) -> None:
    """Version 8: files carry what they say about themselves (date taken, camera, place, size,
    duration; read by the next `xmr index` for files already indexed, without re-embedding
    them), and items may carry tags."""
    have = {c["name"] for c in inspect(conn).get_columns("files")}
    for name, sql_type in _FACT_COLUMNS:
        if name not in have:
            conn.exec_driver_sql(f"ALTER TABLE files ADD COLUMN {name} {sql_type}")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_files_taken_at ON files (taken_at)")
    Tag.__table__.create(conn, checkfirst=True)


@migration(8)
def _unread(conn: Connection) -> None:
    """Version 9: a file remembers the readers (OCR, speech, the sound model) that could not be
    had when it was indexed (`xmr check` reports them; `--repair` reads them again)."""
    if "unread" not in {c["name"] for c in inspect(conn).get_columns("files")}:
        conn.exec_driver_sql("ALTER TABLE files ADD COLUMN unread VARCHAR(64)")


@migration(9)
def _root_mounts(conn: Connection) -> None:
    """Version 10: a root remembers whether it is a mount point (those mounted now are)."""
    if "mount" not in {c["name"] for c in inspect(conn).get_columns("roots")}:
        conn.exec_driver_sql("ALTER TABLE roots ADD COLUMN mount BOOLEAN")
    for root_id, path in list(conn.execute(select(Root.__table__.c.id, Root.__table__.c.path))):
        conn.execute(Root.__table__.update().where(Root.__table__.c.id == root_id).values(mount=os.path.ismount(path)))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets searches read while an index run writes; the busy timeout makes a reader wait
    # for a committing writer instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def normalise_url(url: str) -> str:
    """Plain `postgresql://` (and Heroku-style `postgres://`) URLs use psycopg 3, the driver
    `xmr[postgres]` installs (SQLAlchemy's default would be psycopg2)."""
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception as e:
        raise LibraryError(f"cannot use database {url!r}: {e}") from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        # Who holds the write lock is read from pg_stat_activity: name the process.
        import os
        import socket

        kwargs["connect_args"] = {"application_name": f"xmr pid {os.getpid()} on {socket.gethostname()}"[:63]}
    try:
        engine = create_engine(url, **kwargs)
    except ModuleNotFoundError as e:
        raise LibraryError(f"cannot use database {url!r}: its driver is not installed ({e.name}); "
                           "for PostgreSQL: pip install 'xmr[postgres]'") from None
    except Exception as e:  # bad URL or another missing driver
        raise LibraryError(f"cannot use database {url!r}: {e}") from e
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def get_meta(session: Session, key: str, default: Any = None) -> Any:
    row = session.get(Meta, key)
    return default if row is None else json.loads(row.value)


def set_meta(session: Session, key: str, value: Any) -> None:
    row = session.get(Meta, key)
    if row is None:
        session.add(Meta(key=key, value=json.dumps(value)))
    else:
        row.value = json.dumps(value)


# Tables of other modules that hang off files (indexer.face_catalog) delete their rows of files
# that go: called by drop_files, before the files' rows.
ON_DROP_FILES: list[Callable[[Session, Sequence[int]], None]] = []

# Ids per `IN (...)` list: SQLite allows 32,766 bound variables a statement (999 in older
# builds), and other databases have limits of their own.
IN_CHUNK = 500


def chunked(values: Sequence[int], size: int = IN_CHUNK) -> Iterator[list[int]]:
    values = list(values)
    for i in range(0, len(values), size):
        yield values[i : i + size]


def drop_files(session: Session, vectors: Any, file_ids: Sequence[int]) -> None:
    """Remove files, their items and the items' vectors (`vectors` may be None: no index yet)."""
    for hook in ON_DROP_FILES:
        hook(session, file_ids)
    for part in chunked(file_ids):
        item_ids = list(session.scalars(select(Item.id).where(Item.file_id.in_(part))))
        if vectors is not None:
            vectors.remove(item_ids)
        # Explicit rather than ON DELETE CASCADE, which other databases may not be set up for.
        for items in chunked(item_ids):
            session.execute(delete(AudioRaw).where(AudioRaw.item_id.in_(items)))
        words.delete(session, item_ids)
        for items in chunked(item_ids):
            session.execute(delete(Tag).where(Tag.item_id.in_(items)))
        session.execute(delete(Item).where(Item.file_id.in_(part)))
        session.execute(delete(File).where(File.id.in_(part)))


def schema_version(conn: Connection) -> int | None:
    """The catalog's schema version, or None for an empty database."""
    if not inspect(conn).has_table("meta"):
        return None
    value = conn.execute(select(Meta.value).where(Meta.key == "schema_version")).scalar()
    return None if value is None else int(json.loads(value))


def init_schema(engine: Engine, create: bool) -> bool:
    """Create the tables in an empty database, or migrate an older one step by step. True when
    it created them."""
    try:
        with engine.begin() as conn:
            version = schema_version(conn)
            if version is None:
                if not create:
                    raise LibraryError("no xmr library here yet; run `xmr index PATH` first")
                Base.metadata.create_all(conn)
                words.create(conn)
                conn.execute(Meta.__table__.insert().values(key="schema_version", value=json.dumps(SCHEMA_VERSION)))
                return True
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"this library was written by a newer xmr (schema {version}, this xmr reads up to "
                    f"{SCHEMA_VERSION}); upgrade xmr"
                )
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](conn)
                version += 1
                conn.execute(
                    Meta.__table__.update().where(Meta.key == "schema_version").values(value=json.dumps(version))
                )
        return False
    except (LibraryError, SchemaVersionError):
        raise
    except Exception as e:
        raise LibraryError(f"cannot open catalog {engine.url!r}: {e}") from e
