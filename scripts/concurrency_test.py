"""Search while an index run adds, edits, deletes and renames files; and two writers at once.

    python scripts/concurrency_test.py [--rounds 6] [--images 200] [--seed 0]

Readers loop for the whole time, each timing every answer:
  http     GET /api/search of a running `xmr serve`
  cli      `xmr search --json` (answered by that server, as users run it)
  direct   `xmr search --json --no-server` (its own process reads the catalog and index files)
  library  a long-lived in-process `Library` that reopens when the files change, searching by
           vector (no model: what it measures is waiting on the catalog and the index)
while the writer changes the folder and runs `xmr index` (real processes, checkpointing every
batch), `--rounds` times. Every reader asks for k=1000, i.e. the whole library, so a deleted
item still visible anywhere would show. During the first round a second `xmr index` starts on
the same library: it must refuse at once with a clear message and change nothing.

Prints JSON: errors (any failed call), stale (hits for files deleted or renamed away by a round
whose `xmr index` had exited before the query started), per reader the answer times (p50, p99,
max), the second writer's answer, and the final `xmr check`. Exit 1 unless errors and stale are
zero, the second writer refused, the check passed and no http or library answer took over
`--max-block` seconds (1.0); the cli readers' times include starting Python on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.churn import WORDS, Corpus, random_model  # noqa: E402

K = 1000


def holds_lock(lib: Any, pid: int) -> bool:
    """Does process `pid` hold the library's write lock (indexer.locks) yet?"""
    if lib.engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with lib.engine.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE :name"
            ), {"name": f"xmr pid {pid} on %"}).scalar())
    lock = lib.path / "write.lock"
    return lock.exists() and lock.read_text().strip() == str(pid)


def xmr(*args: str, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retrieval.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, stdin=subprocess.DEVNULL, **kw)


class Reader(threading.Thread):
    """Calls `ask()` (-> the hit paths) in a loop, recording (start, seconds, paths or error)."""

    def __init__(self, name: str, ask: Callable[[str], list[str]], stop: threading.Event, pause: float = 0.0) -> None:
        super().__init__(name=name, daemon=True)
        self.ask, self.stop, self.pause = ask, stop, pause
        self.calls: list[tuple[float, float, list[str] | None, str | None]] = []
        self.rng = random.Random(name)

    def run(self) -> None:
        while not self.stop.is_set():
            word = self.rng.choice(WORDS + ("red circle", "blue square", "green star"))
            t0 = time.time()
            try:
                paths, error = self.ask(word), None
            except Exception as e:  # anything at all is an error this test counts
                paths, error = None, f"{type(e).__name__}: {e}"[:500]
            self.calls.append((t0, time.time() - t0, paths, error))
            time.sleep(self.pause)


def _quantiles(xs: list[float]) -> dict[str, float]:
    import numpy as np

    if not xs:
        return {"n": 0}
    p50, p99 = np.percentile(xs, [50, 99])
    return {"n": len(xs), "p50": round(float(p50), 4), "p99": round(float(p99), 4), "max": round(max(xs), 4)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6, help="index runs while the readers loop")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--texts", type=int, default=40)
    ap.add_argument("--scale", type=int, default=4, help="changes per round: about 10 x scale files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", help="open_clip spec [default: a tiny random-weights model made here]")
    ap.add_argument("--max-block", type=float, default=1.0, help="target: the longest answer, seconds")
    ap.add_argument("--work", help="working folder [default: a temporary one, removed]")
    ap.add_argument("--db", metavar="URL", help="the library's catalog (an empty database, e.g. "
                    "postgresql://USER@HOST/DB) [default: its own SQLite catalog]")
    args = ap.parse_args(argv)

    import numpy as np

    from retrieval.library import Library
    from retrieval.server import discovery

    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="xmr-concurrency-"))
    work.mkdir(parents=True, exist_ok=True)
    model = args.model or random_model(work / "model")
    corpus = Corpus(work / "media", rng)
    for i in range(args.images + args.texts):
        corpus.add_image() if i < args.images else corpus.add_text()
    lib = work / "lib"
    on = ["--library", str(lib), *(["--db", args.db] if args.db else [])]
    index_cmd = [*on, "index", str(corpus.folder), "--model", model, "--no-progress",
                 "--batch-size", "8", "--checkpoint-every", "0"]
    first = xmr(*index_cmd)
    if first.returncode != 0:
        raise SystemExit(f"the first index run failed:\n{first.stderr}")

    server = subprocess.Popen([sys.executable, "-m", "retrieval.cli", *on, "serve", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 180
    while (info := discovery.find(lib, db=args.db)) is None or info["pid"] != server.pid:
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"xmr serve did not start: {server.stderr.read() if server.poll() is not None else 'timeout'}")
        time.sleep(0.2)
    url = info["url"]

    def http(word: str) -> list[str]:
        q = urllib.parse.urlencode({"q": word, "k": K})
        with urllib.request.urlopen(f"{url}/api/search?{q}", timeout=60) as r:
            return [h["path"] for h in json.load(r)["hits"]]

    def cli(*extra: str) -> Callable[[str], list[str]]:
        def ask(word: str) -> list[str]:
            proc = xmr(*on, "search", word, "--json", "-k", str(K), *extra, timeout=300)
            if proc.returncode != 0 or "Traceback" in proc.stderr:
                raise RuntimeError(f"exit {proc.returncode}: {proc.stderr[-300:]}")
            return [h["path"] for h in json.loads(proc.stdout)]
        return ask

    view = {"lib": Library(lib, db=args.db)}
    view["sig"] = view["lib"].disk_signature()
    vrng = np.random.default_rng(0)

    def library(_word: str) -> list[str]:
        current = view["lib"]
        signature = current.disk_signature()
        if signature != view["sig"]:
            view["sig"] = signature
            current = view["lib"] = current.reopen()
        d = current.vectors().d
        v = vrng.standard_normal(d).astype(np.float32)
        return [h.path for h in current.search(vector=v / np.linalg.norm(v), k=K)]

    stop = threading.Event()
    readers = [
        Reader("http", http, stop, 0.02),
        Reader("cli", cli(), stop),
        Reader("direct", cli("--no-server"), stop),
        Reader("library", library, stop, 0.02),
    ]
    for r in readers:
        r.start()

    commits: list[tuple[float, set[str]]] = []  # (the index run had exited by then, paths gone so far)
    gone: set[str] = set()
    second: dict[str, Any] = {}
    rounds = []
    try:
        time.sleep(2.0)  # the readers are answering before anything changes
        for r in range(args.rounds):
            changes = corpus.mutate(args.scale)
            gone |= {str(p) for p in changes["deleted"] + changes["renamed"]}
            t0 = time.time()
            writer = subprocess.Popen([sys.executable, "-m", "retrieval.cli", *index_cmd], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=ROOT)
            if r == 0:  # a second writer, once the first holds the lock
                while writer.poll() is None and not holds_lock(view["lib"], writer.pid):
                    time.sleep(0.05)
                t1 = time.time()
                other = xmr(*index_cmd)
                second = {"exit": other.returncode, "message": other.stderr.strip()[-300:],
                          "seconds": round(time.time() - t1, 2), "first_still_running": writer.poll() is None}
            out, err = writer.communicate()
            if writer.returncode != 0:
                raise SystemExit(f"index round {r} failed:\n{err}")
            commits.append((time.time(), set(gone)))
            rounds.append({"seconds": round(time.time() - t0, 2), "summary": out.strip().split(": ", 1)[-1],
                           **{k: len(v) for k, v in changes.items()}})
            time.sleep(1.0)
    finally:
        stop.set()
        for r in readers:
            r.join(timeout=600)
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()

    result: dict[str, Any] = {"rounds": rounds, "second_writer": second, "readers": {}, "errors": [], "stale": []}
    for reader in readers:
        times = [sec for _, sec, _, _ in reader.calls]
        result["readers"][reader.name] = {**_quantiles(times), "errors": sum(1 for c in reader.calls if c[3])}
        for t0, _, paths, error in reader.calls:
            if error:
                result["errors"].append({"reader": reader.name, "error": error})
                continue
            done = [g for t, g in commits if t < t0]
            if done:
                bad = sorted(set(paths) & done[-1])
                if bad:
                    result["stale"].append({"reader": reader.name, "paths": bad[:3]})
    check = xmr(*on, "check")
    result["check"] = (check.stdout + check.stderr).strip()
    result["items"] = Library(lib, db=args.db).stats()["items"]
    result["catalog"] = view["lib"].engine.dialect.name
    # Waiting is measured where a search itself is timed: the server's answers and the in-process
    # reader. A CLI process's own time adds starting Python on a machine the writer, the server
    # and four readers share (reported, not a target).
    result["max_block_s"] = max((result["readers"][n].get("max", 0.0) for n in ("http", "library")), default=0.0)
    result["ok"] = (
        not result["errors"] and not result["stale"] and check.returncode == 0
        and second.get("exit") == 1 and "is writing" in second.get("message", "") and second.get("first_still_running")
        and result["max_block_s"] <= args.max_block
    )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    res = main()
    print(json.dumps(res, indent=2))
    sys.exit(0 if res["ok"] else 1)
