"""A real multi-node Ray cluster on this machine, for tests and benchmarks: `ray start --head`
plus further `ray start --address ... --block` nodes, each in its own process group (so one can
be killed whole, like a machine that dies), on free ports, with token authentication and a
token of its own, all stopped at the end.

    with LocalCluster(head_cpus=1) as c, c.driver():
        c.add_node(cpus=1, resources={"node2": 1})
        ... xmr index --ray c.address ...   (a subprocess started with c.env, or inside c.driver())
        c.kill_node(0)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
# Ray's token auth settings: a test cluster sets its own, never the user's (~/.ray/auth_token)
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _started(proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait for `ray start --block` to say the node runs; its later output is drained unread."""
    import threading

    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if "Ray runtime started" in line:
                done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    if not done.wait(timeout) or proc.poll() is not None:
        raise RuntimeError("ray start failed:\n" + "".join(seen[-20:]))


class LocalCluster:
    def __init__(self, head_cpus: int = 1, object_store_mb: int = 256) -> None:
        self.head_cpus, self.object_store = head_cpus, object_store_mb * 2**20
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []
        self.temp = Path(tempfile.mkdtemp(prefix="xmr-ray-"))
        # Token auth with a token of its own, on every node and for every driver (`self.auth`):
        # since Ray 2.5x `ray start --head` turns token auth on by itself when ~/.ray/auth_token
        # exists (a plain `ray.init()` writes one) while joining nodes and drivers given an
        # address never do, so a cluster that left it to the machine failed to form on one that
        # had a token.
        token = self.temp / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        self.env = {**{k: v for k, v in ENV.items() if k not in AUTH_VARS}, **self.auth}

    def _ports(self) -> list[str]:
        """Ports of a node's own servers, chosen free (two clusters on one machine must not meet)."""
        return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                "--min-worker-port", "0", "--max-worker-port", "0"]

    def __enter__(self) -> "LocalCluster":
        self.head = subprocess.Popen(
            [RAY, "start", "--head", "--port", str(self.port), "--num-cpus", str(self.head_cpus),
             "--object-store-memory", str(self.object_store), "--include-dashboard=false", "--disable-usage-stats",
             "--temp-dir", str(self.temp), "--block", *self._ports()],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env, start_new_session=True)
        try:
            _started(self.head)
        except RuntimeError:
            self.__exit__()
            raise
        return self

    def add_node(self, cpus: int = 1, resources: dict[str, float] | None = None) -> None:
        proc = subprocess.Popen([RAY, "start", "--address", self.address, "--num-cpus", str(cpus),
                                 "--object-store-memory", str(self.object_store), "--resources",
                                 json.dumps(resources or {}), "--block", *self._ports()],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env,
                                start_new_session=True)
        self.nodes.append(proc)
        _started(proc)

    def alive_nodes(self) -> int:
        """Nodes the cluster counts as alive (asked in a separate process: this one stays no driver)."""
        code = ("import ray, logging; ray.init(address=%r, logging_level=logging.ERROR); "
                "print(sum(1 for n in ray.nodes() if n['Alive']))" % self.address)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=self.env, timeout=120)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0

    @contextlib.contextmanager
    def driver(self) -> Iterator[None]:
        """This process (and what it starts) joins with the cluster's token, until the block ends.
        Ray reads the auth settings once per process, so they are re-read on the way in and out."""
        from ray._raylet import Config

        kept = {k: os.environ.pop(k) for k in AUTH_VARS if k in os.environ}
        os.environ.update(self.auth)
        Config.initialize("")
        try:
            yield
        finally:
            for k in AUTH_VARS:
                os.environ.pop(k, None)
            os.environ.update(kept)
            Config.initialize("")

    def kill_node(self, i: int) -> None:
        """SIGKILL every process of added node i at once: a machine that died."""
        os.killpg(self.nodes[i].pid, signal.SIGKILL)
        self.nodes[i].wait()

    def __exit__(self, *exc: object) -> None:
        """Every node's process group killed (nothing of a test cluster needs a graceful end)."""
        for proc in [*self.nodes, self.head]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(self.temp, ignore_errors=True)
