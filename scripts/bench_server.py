"""How much a warm `xmr serve` saves: `xmr search` as a user types it, with and without a server.

    python scripts/bench_server.py [--model ViT-B-32] [--pretrained none] [--n 10000] [--runs 5]

Builds a temporary library of N items (random vectors with catalog rows, see bench_query.py),
then times, as separate processes, the way a user runs them:
- `cold_cli_s`: `xmr search TEXT --no-server` (imports, model load, search), median of --runs;
- `server_start_s`: `xmr serve --port 0` until it announces itself (model loaded, index read);
- `warm_cli_s`: `xmr search TEXT` while the server runs (finds it, asks over HTTP), median;
- `api_ms`: GET /api/search from this process, p50/p90 over 50 different texts (no process start);
- `results_2000_ms`: one GET asking for k=2000 (a new text each time: encoded, searched, 2,000
  rows read and sent), median of 5; `next_page_ms`: the pages after the first (k=100, offset 100,
  200, ...; the query is not encoded again), median.
Prints JSON with the ratio cold/warm. Random weights (the default) time the same as real ones.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_query import QUERIES, fake_library  # noqa: E402


def xmr(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "retrieval.cli", *args], check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()

    from retrieval.encoders import load_encoder
    from retrieval.encoders import resolve_spec
    from retrieval.server import discovery

    with tempfile.TemporaryDirectory(prefix="xmr-bench-server-") as tmp:
        lib_dir = Path(tmp) / "lib"
        fake_library(lib_dir, load_encoder(resolve_spec(a.model, a.pretrained), "cpu"), a.n)
        base = ["--library", str(lib_dir), "--device", "cpu", "search"]
        cold = [xmr(*base, QUERIES[i % len(QUERIES)], "--no-server") for i in range(a.runs)]

        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "retrieval.cli", "--library", str(lib_dir), "--device", "cpu",
                                 "serve", "--port", "0"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while (info := discovery.find(lib_dir)) is None or info["pid"] != proc.pid:
                if proc.poll() is not None:
                    raise SystemExit(f"xmr serve exited: {proc.stderr.read().decode()}")
                time.sleep(0.05)
            start = time.perf_counter() - t0
            warm = [xmr(*base, QUERIES[i % len(QUERIES)]) for i in range(a.runs)]
            api = []
            for i in range(50):
                url = info["url"] + "/api/search?" + urllib.parse.urlencode({"q": f"{QUERIES[i % len(QUERIES)]} {i}", "k": 10})
                t1 = time.perf_counter()
                with urllib.request.urlopen(url) as resp:
                    json.load(resp)
                api.append((time.perf_counter() - t1) * 1000)
            def get(params: dict) -> tuple[float, dict]:
                url = info["url"] + "/api/search?" + urllib.parse.urlencode(params)
                t1 = time.perf_counter()
                with urllib.request.urlopen(url) as resp:
                    body = json.load(resp)
                return (time.perf_counter() - t1) * 1000, body

            long_lists, pages = [], []
            for i in range(5):
                took, body = get({"q": f"{QUERIES[i]} long {i}", "k": 2000})
                assert len(body["hits"]) == min(2000, a.n), len(body["hits"])
                long_lists.append(took)
                for offset in range(100, 1100, 100):
                    pages.append(get({"q": f"{QUERIES[i]} long {i}", "k": 100, "offset": offset})[0])
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    api.sort()
    print(json.dumps({
        "model": a.model, "items": a.n, "cpu_count": os.cpu_count(),
        "cold_cli_s": round(statistics.median(cold), 3),
        "server_start_s": round(start, 2),
        "warm_cli_s": round(statistics.median(warm), 3),
        "speedup_cli": round(statistics.median(cold) / statistics.median(warm), 1),
        "api_ms": {"p50": round(api[len(api) // 2], 1), "p90": round(api[int(len(api) * 0.9)], 1)},
        "results_2000_ms": round(statistics.median(long_lists), 1),
        "next_page_ms": round(statistics.median(pages), 1),
    }, indent=2))


if __name__ == "__main__":
    main()
