"""A library's vectors cut into N shards by item id (shard i holds the ids with id % N == i),
for sharded search (retrieval.sharded): each shard is a FAISS file in the library's `shards/`
folder, named after the committed index it was cut from, so a shard is never mixed with a newer
commit. A shard is indexed like a library of its size under the library's policy
(indexer.autoindex): exact while small, else IVF with nprobe tuned to the library's recall
target (its tuning beside it, `.json`), within 1/N of the library's --max-memory. `xmr shard N` cuts them and the library remembers N (meta
"shards"): every later index run cuts the shards of its last commit. A shard that is missing
(a run killed before cutting) is cut from the committed index by whoever needs it first.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from indexer.catalog import get_meta, set_meta
from indexer.store import Store
from indexer.vectors import VectorIndex
from retrieval.errors import LibraryError, UsageError

SHARD_DIR = "shards"
MAX_SHARDS = 1024
_NAME = re.compile(r"(.+)\.(\d+)-of-(\d+)\.(faiss|json)")


def shard_path(library: Path, index_file: str, i: int, n: int) -> Path:
    return library / SHARD_DIR / f"{Path(index_file).stem}.{i}-of-{n}.faiss"


def split(ids: np.ndarray, n: int) -> list[np.ndarray]:
    """Positions in `ids` that belong to each of n shards."""
    owner = np.asarray(ids, np.int64) % n
    return [np.flatnonzero(owner == i) for i in range(n)]


def cut(library: Path, index_file: str, n: int, only: int | None = None,
        policy: dict[str, Any] | None = None) -> list[Path]:
    """Write the shards of the index file `index_file` (all, or shard `only`) under the index
    `policy` (the catalog's "index_policy": recall target, memory budget); returns their paths."""
    from indexer import autoindex

    if not 1 <= n <= MAX_SHARDS:
        raise UsageError(f"the number of shards must be between 1 and {MAX_SHARDS}, got {n}")
    source = library / index_file
    if not source.exists():
        raise LibraryError(f"{source} is gone (a newer commit replaced it); cut the shards of the current index")
    policy = policy or {}
    target = float(policy.get("recall") or autoindex.DEFAULT_RECALL)
    budget = int(policy["max_memory"]) // n if policy.get("max_memory") else None
    vecs = VectorIndex.load(source, "IDMap2,Flat", mmap=True)
    ids, xb = vecs.all_vectors()
    (library / SHARD_DIR).mkdir(exist_ok=True)
    out = []
    for i, rows in enumerate(split(ids, n)):
        if only is not None and i != only:
            continue
        factory = autoindex.choose_factory(len(rows), vecs.d, budget)
        shard, tuning = autoindex.build(factory, ids[rows], xb[rows], target)
        path = shard_path(library, index_file, i, n)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.json.tmp")
        tmp.write_text(json.dumps({"factory": factory, "tuning": tuning}))
        os.replace(tmp, path.with_suffix(".json"))  # before the index: a shard file always has its tuning
        shard.save(path)
        out.append(path)
    return out


def load(library: Path, index_file: str, i: int, n: int, policy: dict[str, Any] | None = None) -> VectorIndex:
    """Shard i of n of `index_file` with its tuned nprobe, cut first if it is not there yet."""
    path = shard_path(library, index_file, i, n)
    if not path.exists() or not path.with_suffix(".json").exists():
        cut(library, index_file, n, only=i, policy=policy)
    info = json.loads(path.with_suffix(".json").read_text())
    vecs = VectorIndex.load(path, info["factory"])
    if vecs.is_ivf and info["tuning"].get("nprobe"):
        vecs.nprobe = int(info["tuning"]["nprobe"])
    return vecs


def prune(library: Path, keep_index_file: str) -> int:
    """Remove shards cut from other index files than `keep_index_file`. Returns how many went."""
    folder = library / SHARD_DIR
    if not folder.is_dir():
        return 0
    gone = 0
    for p in folder.iterdir():
        m = _NAME.fullmatch(p.name)
        if m and m.group(1) != Path(keep_index_file).stem:
            p.unlink(missing_ok=True)
            gone += 1
    return gone


def configured(store: Store) -> int | None:
    with store.Session() as s:
        return get_meta(s, "shards")


def policy_of(store: Store) -> dict[str, Any]:
    with store.Session() as s:
        return get_meta(s, "index_policy") or {}


def shard_library(store: Store, n: int | None) -> list[Path]:
    """`xmr shard N`: remember N and cut the shards of the current commit (None: cut again with
    the remembered N). 1 turns sharding off."""
    with store.Session() as s:
        if n is None:
            n = get_meta(s, "shards")
            if n is None:
                raise UsageError("this library is not sharded; give the number of shards: xmr shard N")
        elif not 1 <= n <= MAX_SHARDS:
            raise UsageError(f"the number of shards must be between 1 and {MAX_SHARDS}, got {n}")
        set_meta(s, "shards", None if n == 1 else n)
        s.commit()
    store.refresh()
    if n == 1 or not store.index_path.exists():
        prune(store.path, "")
        return []
    paths = cut(store.path, store.index_path.name, n, policy=policy_of(store))
    prune(store.path, store.index_path.name)
    return paths


def after_commit(store: Store) -> None:
    """After an index run: the shards of the commit it made, when the library is sharded."""
    n = configured(store)
    if n and store.index_path.exists() and not shard_path(store.path, store.index_path.name, 0, n).exists():
        cut(store.path, store.index_path.name, n, policy=policy_of(store))
        prune(store.path, store.index_path.name)


def sizes(library: Path, index_file: str, n: int) -> list[int | None]:
    """Bytes of each shard file of `index_file` (None where not cut yet)."""
    return [os.path.getsize(p) if (p := shard_path(library, index_file, i, n)).exists() else None for i in range(n)]
