"""Watched folders benchmark: how soon a new picture is searchable, what idle watching costs,
and a burst of many files, against a real `xmr index --watch` process with its model warm.

    python scripts/bench_watch.py [--pictures 12] [--size 4000x3000] [--burst 10000]
                                  [--model ViT-B-32 --pretrained none]

Prints JSON:
- latency_s: from the last write of a photo (phone-sized JPEG, written in four parts) to its
  row in the catalog (rows are committed after the index file that holds their vectors, so a
  row is a searchable item): p50, p90, max over --pictures photos, one at a time;
- idle_cpu_percent: the watcher's CPU use over --idle seconds with nothing changing, hearing
  events, and again polling (`--poll 2`) once the burst's files are there too;
- burst: --burst small pictures copied into the folder at once: seconds until all are indexed,
  and in how many runs (a run per file would be the failure).
The model runs with random weights (timing does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.photos import write_photos  # noqa: E402


def indexed(lib: Path, where: str = "", *args: object) -> int:
    with sqlite3.connect(f"file:{lib / 'catalog.db'}?mode=ro", uri=True, timeout=30) as db:
        return db.execute(f"SELECT count(*) FROM files {where}", args).fetchone()[0]


def status(lib: Path) -> dict:
    try:
        return json.loads((lib / "watch.json").read_text())
    except (OSError, ValueError):
        return {}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def until(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


class WatcherProcess:
    """`xmr index MEDIA --watch` with the benchmark's model, until stopped (SIGTERM)."""

    def __init__(self, lib: Path, media: Path, model: list[str], *extra: str) -> None:
        self.lib = lib
        self.log = open(lib.parent / f"watch-{len(extra)}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "retrieval.cli", "--library", str(lib), "index", str(media), *model, "--watch",
             "--no-progress", *extra], stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "XMR_SPEECH_MODEL": "none"})
        until(lambda: status(lib).get("state") == "watching" or self.proc.poll() is not None, 600, "the watcher")
        if self.proc.poll() is not None:
            raise SystemExit(f"the watcher exited {self.proc.returncode}: {(lib.parent / 'watch-0.log').read_text()}")

    def idle_cpu_percent(self, seconds: float) -> float:
        before = cpu_seconds(self.proc.pid)
        time.sleep(seconds)
        return round(100 * (cpu_seconds(self.proc.pid) - before) / seconds, 2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)
        self.log.close()


def latencies(lib: Path, media: Path, photos: list[Path]) -> list[float]:
    out = []
    for i, src in enumerate(photos):
        data, target = src.read_bytes(), media / f"new-{i:03d}.jpg"
        with open(target, "wb") as f:  # as a copy or a sync writes it: in parts
            for k in range(4):
                f.write(data[k * len(data) // 4:(k + 1) * len(data) // 4])
                f.flush()
        t = time.monotonic()
        until(lambda: indexed(lib, "WHERE path = ?", str(target)), 120, str(target))
        out.append(time.monotonic() - t)
        time.sleep(0.5)
    return out


def burst(lib: Path, media: Path, work: Path, n: int) -> dict:
    from PIL import Image

    staging = work / "staging"
    staging.mkdir()
    for i in range(n):
        Image.new("RGB", (48, 48), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)).save(staging / f"s{i:05d}.png")
    before, runs = indexed(lib), status(lib).get("runs", 0)
    t = time.monotonic()
    shutil.copytree(staging, media / "burst")
    copied = time.monotonic() - t
    until(lambda: indexed(lib) >= before + n, 3600, "the burst")
    done = time.monotonic() - t
    # the watcher writes its status just after its run's last commit
    until(lambda: status(lib).get("state") == "watching" and not status(lib).get("pending"), 60, "the status")
    return {"files": n, "copy_s": round(copied, 2), "indexed_s": round(done, 2), "runs": status(lib)["runs"] - runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pictures", type=int, default=12)
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--burst", type=int, default=10000)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle watching measured")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="none")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xmr-bench-watch-"))
    try:
        w, h = map(int, a.size.split("x"))
        photos = write_photos(work / "photos", a.pictures + 2, (w, h))
        media, lib = work / "media", work / "lib"
        media.mkdir()
        for p in photos[-2:]:
            shutil.copy(p, media)
        model = ["--model", a.model, "--pretrained", a.pretrained]
        watcher = WatcherProcess(lib, media, model)
        lat = latencies(lib, media, photos[:a.pictures])
        idle = watcher.idle_cpu_percent(a.idle)
        result = {"pictures": a.pictures, "size": a.size, "model": a.model, "cores": os.cpu_count(),
                  "latency_s": {"p50": round(statistics.median(lat), 3),
                                "p90": round(sorted(lat)[int(0.9 * (len(lat) - 1))], 3), "max": round(max(lat), 3)},
                  "idle_cpu_percent": idle}
        if a.burst:
            result["burst"] = burst(lib, media, work, a.burst)
        watcher.stop()
        polling = WatcherProcess(lib, media, model, "--poll", "2")
        result["files_watched"] = indexed(lib)
        result["idle_cpu_percent_polling"] = polling.idle_cpu_percent(a.idle)
        polling.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
