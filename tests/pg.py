"""A real PostgreSQL server for the tests: initdb + pg_ctl in a temporary folder, as an
unprivileged user (PostgreSQL refuses to run as root), on a free loopback port, stopped at the
end. Debian's `postgresql` package provides the programs (`.ci/run` installs it)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import uuid
from pathlib import Path


def pg_bin() -> Path | None:
    """The folder of initdb/pg_ctl: Debian keeps them out of PATH, in /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, base: Path) -> None:
        bindir = pg_bin()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir, self.base = bindir, base
        self.port = _free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb and postgres will not run as root
            self.user = next(u for u in ("postgres", "nobody") if _has_user(u))
            os.chown(base, pwd.getpwnam(self.user).pw_uid, -1)
        self.data = base / "data"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions")
        opts = f"-p {self.port} -h 127.0.0.1 -k {base} -F -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(base / "server.log"), "-o", opts, "-w", "start")

    def _run(self, program: str, *args: str) -> None:
        proc = subprocess.run([str(self.bindir / program), *args], capture_output=True, text=True, user=self.user,
                              cwd=self.base, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{program} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database on this server; its plain postgresql:// URL."""
        import psycopg

        name = f"xmr_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        except (subprocess.SubprocessError, OSError):
            pass


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
