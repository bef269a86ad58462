"""The store's commit protocol on its own, with a fake index: which files are current when, what a
crash between writing and committing leaves, who removes the leftovers, one writer at a time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from indexer.catalog import File, get_meta
from indexer.store import Store
from retrieval.errors import LibraryLockedError


class FakeIndex:
    """What the store asks of an index when it commits: save it, say how many vectors, track
    whether it changed since the last save."""

    mmapped = False

    def __init__(self, ntotal: int = 3) -> None:
        self.ntotal, self.dirty, self.disk_signature = ntotal, True, None
        self.saved: list[str] = []

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(b"fake index %d" % self.ntotal)
        os.replace(tmp, path)
        self.saved.append(path.name)


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith(("vectors", "bridge", "."))}


def _write(store: Store, ntotal: int, crash: bool = False) -> FakeIndex:
    """A writer's checkpoint: a file row and a changed index, committed (or killed in the commit)."""
    fake = FakeIndex(ntotal)
    with store.write_lock(), store.Session() as s:
        store.replace_vectors(fake, store.factory, None)  # type: ignore[arg-type]
        s.add(File(path=f"/media/{ntotal}.png", modality="image", size=1, mtime_ns=0, phash="0"))
        if crash:
            s.commit = lambda: (_ for _ in ()).throw(OSError("power cut"))  # type: ignore[method-assign]
            with pytest.raises(OSError):
                store.commit(s)
            return fake
        store.commit(s)
    return fake


def test_a_commit_makes_a_new_index_file_current_and_removes_the_old(tmp_path):
    store = Store(tmp_path / "lib", create=True)
    first = _write(store, 3)
    assert first.saved == ["vectors-1.faiss"] and store.index_path.name == "vectors-1.faiss"
    assert not first.dirty
    second = _write(store, 5)
    assert second.saved == ["vectors-2.faiss"]
    assert _names(store.path) == {"vectors-2.faiss"}  # the superseded file went after the commit
    with store.Session() as s:
        assert (get_meta(s, "index_file"), get_meta(s, "vectors_total")) == ("vectors-2.faiss", 5)


def test_nothing_changed_nothing_written(tmp_path):
    store = Store(tmp_path / "lib", create=True)
    fake = _write(store, 3)
    with store.write_lock(), store.Session() as s:
        store.commit(s)  # the index is not dirty and its file exists: no new file
    assert fake.saved == ["vectors-1.faiss"] and _names(store.path) == {"vectors-1.faiss"}


def test_a_crash_between_the_file_and_the_commit_keeps_the_last_commit(tmp_path):
    store = Store(tmp_path / "lib", create=True)
    _write(store, 3)
    _write(Store(store.path), 4, crash=True)  # wrote vectors-2.faiss, never committed it
    assert _names(store.path) == {"vectors-1.faiss", "vectors-2.faiss"}
    reader = Store(store.path)
    assert reader.index_path.name == "vectors-1.faiss"  # readers open only what a commit named
    assert [p.name for p in reader.stray_files()] == ["vectors-2.faiss"]
    with reader.Session() as s:
        assert [f.path for f in s.query(File)] == ["/media/3.png"]  # the rows went with it
    with reader.write_lock():  # the next writer removes what the dead one left
        pass
    assert _names(store.path) == {"vectors-1.faiss"}


def test_a_staged_bridge_is_current_only_once_committed(tmp_path):
    store = Store(tmp_path / "lib", create=True)
    _write(store, 3)
    with store.write_lock(), store.Session() as s:
        store.stage_bridge(s, "bridge-aaaa.safetensors", lambda p: p.write_bytes(b"a"))
        assert store.bridge_name == "bridge-aaaa.safetensors"  # this writer sees it
        assert Store(store.path).bridge_path.name == "bridge.safetensors"  # others do not yet
        store.commit(s)
    assert Store(store.path).bridge_path.name == "bridge-aaaa.safetensors"
    with store.write_lock(), store.Session() as s:  # a refit that is rolled back
        store.stage_bridge(s, "bridge-bbbb.safetensors", lambda p: p.write_bytes(b"b"))
        s.rollback()
        store.forget_uncommitted()
    assert store.bridge_name == "bridge-aaaa.safetensors"
    with store.write_lock():
        pass
    assert _names(store.path) == {"vectors-1.faiss", "bridge-aaaa.safetensors"}


def test_readers_follow_commits_when_they_refresh(tmp_path):
    store = Store(tmp_path / "lib", create=True)
    _write(store, 3)
    reader = Store(store.path)
    before = reader.disk_signature()
    _write(store, 4)
    assert reader.index_path.name == "vectors-1.faiss"  # a view keeps what it opened
    assert reader.disk_signature() != before  # ... and can tell that it changed
    assert reader.refresh() and reader.index_path.name == "vectors-2.faiss"


def test_one_writer_at_a_time(tmp_path):
    store = Store(tmp_path / "lib", create=True)
    other = Store(store.path)
    with store.write_lock():
        with pytest.raises(LibraryLockedError, match=f"pid {os.getpid()}"):
            with other.write_lock():
                pass
    with other.write_lock():  # free again once the first is done
        pass
