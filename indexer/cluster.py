"""`xmr index --ray`: the files of an index run decoded and encoded across a Ray cluster as one
Ray Data pipeline, their outcomes streamed back to the one writer (indexer.pipeline).

    paths -> [read on the driver's node, with --ship-bytes] -> decode (CPU tasks, one per few files)
          -> encode (an actor pool: one actor per GPU, else per node) -> the driver, as they finish

The driver keeps every write: rows, vectors, checkpoints, the bridge. Workers read the files at
the same path as the driver (shared storage), or, with `ship_bytes`, get their bytes from an actor
on the driver's node. Ray Data retries a task whose node died and replaces a dead actor, so a
lost worker node costs time, not files; if the cluster itself fails, the run stops like an
interrupted one (everything checkpointed stays) and the next run resumes.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import socket
import warnings
from dataclasses import replace
from typing import Any, Callable, Iterator, Sequence

from indexer.remote import SegmentEncoder, WorkerSetup, decode_file
from indexer.scan import MediaFile
from indexer.stages.context import DecodeSetup
from indexer.stages.decode import Decoded
from indexer.stages.decoders import Poll, Source, WholeFile
from retrieval.errors import ClusterError, UsageError, XmrError

# Ray's own logs, on the driver, only when something is wrong.
_QUIET = {"RAY_USAGE_STATS_ENABLED": "0"}
DECODE_MEMORY = 256 * 2**20  # bytes a decode task reserves


def _ray() -> Any:
    try:
        for k, v in _QUIET.items():
            os.environ.setdefault(k, v)
        import ray
        import ray.data  # noqa: F401

        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notes on progress bars and memory estimates
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'xmr[ray]'") from None
    return ray


def connect(address: str | None) -> Any:
    """Join the cluster at `address` ('auto': the one running on this machine's network; None:
    a running local one, else a new one in this process). Returns the ray module."""
    ray = _ray()
    if not ray.is_initialized():
        _reachable(address)
        try:
            ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING,
                     include_dashboard=False, configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = address or "this machine"
            if _auth_refused(e):
                raise ClusterError(
                    f"the Ray cluster at {where} refused this machine's authentication token: a cluster "
                    "with token authentication needs RAY_AUTH_MODE=token here and its token (RAY_AUTH_TOKEN, "
                    "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)") from None
            raise ClusterError(f"cannot reach the Ray cluster at {where}: "
                               f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return ray


def _auth_refused(e: BaseException | None) -> bool:
    """Ray wraps the GCS's InvalidAuthToken in a ConnectionError that only names the address."""
    seen = 0
    while e is not None and seen < 10:
        if type(e).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(e):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def setup_for(decode: DecodeSetup, models: Any, batch_size: int | None) -> WorkerSetup:
    """What workers need: the run's decode setup, and how to load and check the main model."""
    enc = models.encoder
    rec = models.recorded_identity or enc.identity()
    main = decode.models[0]
    return WorkerSetup(decode=replace(decode, models=(main,), device_jpeg=False), spec=models.spec,
                       weights_sha256=rec.get("weights_sha256"), dim=int(rec.get("dim") or enc.dim),
                       batch_size=batch_size or 0, device=models.device)


class RayDecoder:
    """The Decoder (indexer.stages.decoders) of a Ray run: files decoded by Ray Data tasks and
    embedded by the main model's actors; each comes back whole, with its vectors."""

    def __init__(self, address: str | None, decode: DecodeSetup, models: Any, batch_size: int | None,
                 ship_bytes: bool, on_engines: Callable[..., None]) -> None:
        from indexer.stages.decoders import quiet_readers

        self.address, self.ship_bytes, self.on_engines = address, ship_bytes, on_engines
        self.setup = setup_for(quiet_readers(decode), models, batch_size)

    def files(self, jobs: Sequence[MediaFile], poll: Poll) -> Iterator[tuple[MediaFile, Source]]:
        by_path = {mf.path: mf for mf in jobs}
        for out in outcomes(self.address, list(by_path.values()), self.setup, ship_bytes=self.ship_bytes, poll=poll):
            self.on_engines(out.engines, out.notes)
            yield by_path[out.path], WholeFile(out)

    def close(self) -> None:
        pass


def _reachable(address: str | None) -> None:
    """HOST:PORT answers at all: Ray itself retries an unreachable address for minutes."""
    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {e}") from None


def encoder_actors(ray: Any) -> tuple[int, float, int]:
    """(actors, GPUs each, torch threads each): one per GPU of the cluster; else one per alive
    node, using as many threads as the smallest node has CPUs (decode tasks share them, as the
    decode threads of a local run share the cores with the model)."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus:
        return gpus, 1.0, 0
    cpus = [int(n.get("Resources", {}).get("CPU", 1)) for n in ray.nodes() if n.get("Alive")]
    return max(1, len(cpus)), 0.0, max(1, min(cpus, default=1))


def _spread() -> dict[str, Any]:
    return {"scheduling_strategy": "SPREAD"}


def _resolve(value: Any) -> Any:
    """A value given to Ray Data by reference (ray.put) as itself."""
    import ray

    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


class _Encoder(SegmentEncoder):
    """The actor's class, made per run with its setup inside (`_encoder_class`), so that the
    setup travels with the class rather than as a constructor argument in the object store."""

    setup: WorkerSetup
    threads: int = 0

    def __init__(self) -> None:
        if self.threads:  # a CPU node: the model's threads follow the node's CPUs, not the actor's one
            import torch

            torch.set_num_threads(self.threads)
        super().__init__(self.setup)


def _encoder_class(setup: WorkerSetup, threads: int) -> type:
    return type("XmrEncoder", (_Encoder,), {"setup": setup, "threads": threads})


class _FileServer:
    """Reads files on the driver's node for `--ship-bytes` (workers cannot see its disk)."""

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()


def _decode_batch(batch: dict[str, Any], setup: Any, server: Any) -> dict[str, Any]:
    setup = _resolve(setup)
    out = []
    for path, size in zip(batch["path"], batch["size"]):
        data = None
        if server is not None:
            import ray

            try:
                data = ray.get(server.read.remote(str(path)))
            except Exception as e:  # noqa: BLE001 - the file's own failure (gone, unreadable): skipped
                o = Decoded(str(path), error=f"cannot read it on the driver: {type(e).__name__}: {e}")
                out.append(pickle.dumps(o, protocol=5))
                continue
        out.append(pickle.dumps(decode_file(str(path), int(size), data, setup), protocol=5))
    return {"outcome": out}


def outcomes(address: str | None, jobs: Sequence[MediaFile], setup: WorkerSetup, *, ship_bytes: bool = False,
             poll: Callable[[], None] = lambda: None, files_per_task: int = 4) -> Iterator[Decoded]:
    """Every job's outcome, in the order they finish. `poll` is called between outcomes (it
    raises to stop the run; the pipeline is then shut down)."""
    if not jobs:
        return
    ray = connect(address)
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver's own bar counts files
    ctx.print_on_execution_start = False
    ctx.issue_detectors_config.detectors = []
    actors, gpus, threads = encoder_actors(ray)
    server = None
    if ship_bytes:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        server = ray.remote(num_cpus=0)(_FileServer).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()
    setup_ref = ray.put(setup)  # the tokenizer and transform travel once, not with every task
    items = [{"path": j.path, "size": j.size} for j in jobs]
    ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / files_per_task)))
    # `memory` (room to decode a video) also keeps Ray Data from fusing decoding into the actors
    ds = ds.map_batches(_decode_batch, fn_kwargs={"setup": setup_ref, "server": server}, batch_size=None, num_cpus=1,
                        memory=DECODE_MEMORY)
    files_per_batch = max(1, (setup.batch_size or 32) // 4)
    # On CPU nodes the actors reserve no CPU (their model threads share the cores with decode
    # tasks, as a local run's do) and are spread one per node.
    with warnings.catch_warnings():  # ray_remote_args_fn: deprecated in 2.60, the only way to SPREAD an actor pool
        warnings.simplefilter("ignore")
        ds = ds.map_batches(_encoder_class(setup, threads), batch_size=files_per_batch, compute=ActorPoolStrategy(size=actors),
                            num_gpus=gpus, num_cpus=0 if not gpus else None,
                            ray_remote_args_fn=None if gpus else _spread)
    it = iter(ds.iter_rows())
    try:
        while True:
            poll()
            try:
                row = next(it)
            except StopIteration:
                return
            except (KeyboardInterrupt, XmrError):
                raise
            except Exception as e:  # Ray's own failures (a task out of retries, the cluster gone)
                raise ClusterError(f"the Ray cluster failed under this run ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''}); run it again to resume") from e
            yield pickle.loads(row["outcome"])
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
        if server is not None:
            ray.kill(server)
