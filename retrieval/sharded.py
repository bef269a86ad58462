"""Sharded search on Ray (`xmr serve --ray ADDRESS`): one actor per shard of the library's
vectors (indexer.shards), on whichever node Ray places it (each reads its shard from the
library's folder, so every node must see that folder), and `ShardedIndex`, which stands in for
the loaded index on the query side: every search fans out to the shards and their top-k lists
merge into exactly the top-k of the shards' own answers: the same hits as one exact index while
the shards are exact (up to indexer.autoindex.FLAT_MAX vectors each), and each shard's own
tuned recall once they are IVF. Filters,
kinds and calibration work unchanged: subsets of ids are split by shard like the vectors.

An actor that dies is restarted by Ray (max_restarts); until it answers again, searches answer
from the other shards and say so (`missing`): the server reports such answers as partial.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from indexer import shards
from retrieval.errors import ClusterError

log = logging.getLogger("xmr")
RESTART_EVERY_S = 1.0
# A shard slower than this is left out of an answer (named in it): a restarting actor takes
# seconds, and a query waiting for it would stall every other query of the server.
ANSWER_TIMEOUT_S = float(os.environ.get("XMR_SHARD_TIMEOUT", "2"))


class ShardServer:
    """One shard, in a Ray actor: loaded at start (and again after a restart), swapped when the
    library commits a new index."""

    def __init__(self, library: str, i: int, n: int, index_file: str, policy: dict[str, Any] | None = None,
                 threads: int = 1) -> None:
        from indexer.vectors import import_faiss

        # The actor reserves no CPU, so Ray gives it one OpenMP thread; FAISS spreads one query's
        # inverted lists over threads, so the shards of a node share its cores instead.
        import_faiss().omp_set_num_threads(max(1, threads))
        self.library, self.i, self.n, self.policy = Path(library), i, n, policy
        self.index_file = ""
        self.vecs: Any = None
        self.follow(index_file)

    def follow(self, index_file: str) -> int:
        if index_file != self.index_file:
            self.vecs = shards.load(self.library, index_file, self.i, self.n, self.policy)
            self.index_file = index_file
        return int(self.vecs.ntotal)

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def search(self, index_file: str, xq: np.ndarray, k: int,
               subsets: Sequence[np.ndarray | None] | None) -> list[tuple[np.ndarray, np.ndarray]]:
        self.follow(index_file)
        if subsets is None:
            return [self.vecs.search(xq, k)]
        out = []
        for sub in subsets:
            if sub is None:
                out.append(self.vecs.search(xq, k))
            elif len(sub) == 0 or self.vecs.ntotal == 0:
                out.append((np.zeros((len(xq), 0), np.float32), np.zeros((len(xq), 0), np.int64)))
            else:
                out.append(self.vecs.search_subset(xq, k, sub))
        return out

    def present(self, index_file: str, ids: np.ndarray) -> np.ndarray:
        self.follow(index_file)
        return self.vecs.present(ids)

    def reconstruct_many(self, index_file: str, ids: np.ndarray) -> np.ndarray:
        self.follow(index_file)
        return self.vecs.reconstruct_many(ids)

    def ids(self, index_file: str) -> np.ndarray:
        self.follow(index_file)
        return self.vecs.ids()


def merge(answers: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of several shards' top-k lists for one query: D, I of shape (1, <=k), best first."""
    d = np.concatenate([a[0][0] for a in answers]) if answers else np.zeros(0, np.float32)
    i = np.concatenate([a[1][0] for a in answers]) if answers else np.zeros(0, np.int64)
    keep = i != -1
    d, i = d[keep], i[keep]
    order = np.lexsort((i, -d))[:k]  # by score, ties by id: the same order whatever the shard count
    return d[order][None, :].astype(np.float32), i[order][None, :]


class ShardedIndex:
    """The read side of VectorIndex (what search, filters, calibration and "more like this"
    use), answered by shard actors."""

    is_ivf = False
    nprobe = None
    mmapped = True
    disk_signature = None

    def __init__(self, ray: Any, library: Path, n: int, index_file: str, d: int,
                 policy: dict[str, Any] | None = None) -> None:
        self.ray, self.library, self.n, self.d, self.policy = ray, Path(library), n, d, policy
        self.index_file = index_file
        self.version = 0
        self.restarts = 0
        self._local = threading.local()
        self._remote = ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)(ShardServer)
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        cpus = sum(int(node.get("Resources", {}).get("CPU", 1)) for node in nodes)
        self._threads = max(1, cpus // n)  # the cluster's cores shared out among the shards
        self._recreated: dict[int, float] = {}
        self.actors = [self._start(i) for i in range(n)]
        try:
            self._ntotal = sum(ray.get([a.follow.remote(index_file) for a in self.actors], timeout=600))
        except Exception as e:  # noqa: BLE001 - Ray's errors: a shard unreadable, no room on the cluster
            raise ClusterError(f"the shard actors did not start: {type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}") from None

    def _start(self, i: int) -> Any:
        """Shard i's actor: named xmr-shard-PID-I-of-N (namespace "xmr") for operators and tests,
        spread over the nodes (one machine lost costs only its shards), restarted by Ray if its
        process or node dies."""
        name = f"xmr-shard-{os.getpid()}-{i}-of-{self.n}"
        opts = dict(namespace="xmr", scheduling_strategy="SPREAD")
        try:
            return self._remote.options(name=name, **opts).remote(str(self.library), i, self.n, self.index_file, self.policy,
                                                                      self._threads)
        except ValueError:  # the name is still held by the actor it replaces
            return self._remote.options(**opts).remote(str(self.library), i, self.n, self.index_file, self.policy,
                                                       self._threads)

    def _replace_dead(self, i: int) -> None:
        """An actor that cannot be restarted by Ray (its start failed: say its shard could not be
        read) is replaced by a new one, at most every RESTART_EVERY_S seconds."""
        now = time.monotonic()
        if now - self._recreated.get(i, 0.0) >= RESTART_EVERY_S:
            self._recreated[i] = now
            log.warning("the actor of shard %d of %d is dead: starting a new one", i, self.n)
            self.actors[i] = self._start(i)

    # -- which shards answered ---------------------------------------------------------------

    @property
    def missing(self) -> list[int]:
        """Shards that failed to answer a call of this thread since `reset()` (a search makes
        several calls; its answer is partial if any lacked a shard)."""
        return sorted(getattr(self._local, "missing", set()))

    def reset(self) -> None:
        self._local.missing = set()

    def _ask(self, calls: dict[int, Any]) -> dict[int, Any]:
        """Answers by shard; a shard that failed or timed out is left out and noted (also when
        none answered: the answer is then empty and says which shards it lacks)."""
        ready, _ = self.ray.wait(list(calls.values()), num_returns=len(calls), timeout=ANSWER_TIMEOUT_S)
        got, missing = {}, []
        for i, ref in calls.items():
            if ref not in ready:
                missing.append(i)
                continue
            try:
                got[i] = self.ray.get(ref)
            except self.ray.exceptions.ActorDiedError:  # for good: Ray will not restart it
                missing.append(i)
                self._replace_dead(i)
            except Exception:  # noqa: BLE001 - restarting (Ray brings it back), or a failed call: lacks it
                missing.append(i)
        if missing:
            self._local.missing = getattr(self._local, "missing", set()) | set(missing)
            log.warning("shards %s of %d did not answer in %g s (restarting?): this answer is partial",
                        missing, self.n, ANSWER_TIMEOUT_S)
            self.restarts += 1
            self.version += 1  # never keep a partial answer in the searcher's memo
        return got

    def follow(self, index_file: str) -> "ShardedIndex":
        """The library committed a new index: the shards follow at their next call."""
        if index_file != self.index_file:
            self.index_file = index_file
            counts = self._ask({i: a.follow.remote(index_file) for i, a in enumerate(self.actors)})
            self._ntotal = sum(counts.values())
            self.version += 1
        return self

    # -- VectorIndex's read side ---------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        return self._ntotal

    def _by_shard(self, ids: np.ndarray) -> list[np.ndarray]:
        ids = np.ascontiguousarray(ids, np.int64)
        return [ids[rows] for rows in shards.split(ids, self.n)]

    def search(self, xq: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.search_subsets(xq, k, [None])[0]  # type: ignore[list-item]

    def search_subset(self, xq: np.ndarray, k: int, ids: np.ndarray, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.search_subsets(xq, k, [ids])[0]

    def search_subsets(self, xq: np.ndarray, k: int, subsets: Sequence[np.ndarray | None]) -> list[tuple[np.ndarray, np.ndarray]]:
        xq = np.ascontiguousarray(xq, np.float32).reshape(1, -1)
        parts = [None if s is None else self._by_shard(s) for s in subsets]
        calls = {i: a.search.remote(self.index_file, xq, k, [None if p is None else p[i] for p in parts])
                 for i, a in enumerate(self.actors)}
        got = self._ask(calls)
        return [merge([got[i][j] for i in got], k) for j in range(len(subsets))]

    def present(self, ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(ids, np.int64)
        parts = self._by_shard(ids)
        got = self._ask({i: a.present.remote(self.index_file, parts[i]) for i, a in enumerate(self.actors) if len(parts[i])})
        held = np.concatenate([got[i] for i in sorted(got)]) if got else ids[:0]
        return ids[np.isin(ids, held)]

    def reconstruct_many(self, ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(ids, np.int64)
        out = np.zeros((len(ids), self.d), np.float32)
        rows = shards.split(ids, self.n)
        got = self._ask({i: a.reconstruct_many.remote(self.index_file, ids[rows[i]])
                         for i, a in enumerate(self.actors) if len(rows[i])})
        for i, vecs in got.items():
            out[rows[i]] = vecs
        return out

    def reconstruct(self, item_id: int) -> np.ndarray:
        return self.reconstruct_many(np.array([item_id], np.int64))[0]

    def ids(self) -> np.ndarray:
        got = self._ask({i: a.ids.remote(self.index_file) for i, a in enumerate(self.actors)})
        return np.concatenate([got[i] for i in sorted(got)]) if got else np.zeros(0, np.int64)

    def flat_matrix(self) -> None:
        return None


def open_sharded(address: str | None, store: Any) -> ShardedIndex:
    """Shard actors for the library of `store` on the cluster at `address` (its remembered shard
    count; the current commit's shards, cut first where missing)."""
    from indexer.cluster import connect

    n = shards.configured(store)
    if not n:
        raise ClusterError(f"{store.path} is not sharded: run `xmr shard N` first")
    ray = connect(address)
    vecs = store.vectors()
    if vecs is None:
        raise ClusterError(f"{store.path} has no vectors yet: index something first")
    return ShardedIndex(ray, store.path, n, store.index_path.name, vecs.d, shards.policy_of(store))
