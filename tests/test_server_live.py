"""A real `xmr serve` process: `xmr search` finds it, it follows index runs without a restart,
stops cleanly, leaves no stale announcement behind, and raw request paths cannot escape."""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from scripts.synthetic import CONCEPTS, draw
from tests.conftest import live_server, run_xmr


def get(url: str, timeout: float = 30) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


@pytest.fixture()
def library(tmp_path, trained_model, samples):
    media = tmp_path / "media"
    shutil.copytree(samples[0], media)
    lib = tmp_path / "lib"
    run_xmr("--library", str(lib), "index", str(media), "--model", trained_model, "--no-progress", check=True)
    return lib, media


def test_cli_search_uses_the_running_server_and_falls_back(library):
    lib, media = library
    picture = next(media.glob("photos/*.png"))
    local = run_xmr("--library", str(lib), "search", "a red circle", "-k", "5", "--json", "--no-server", check=True)
    local_by_picture = run_xmr("--library", str(lib), "search", "--image", str(picture), "--type", "text", "--json", "--no-server", check=True)
    with live_server(lib) as (proc, info):
        assert info["host"] == "127.0.0.1" and oct(os.stat(lib / "server.json").st_mode & 0o777) == "0o600"
        warm = run_xmr("-v", "--library", str(lib), "search", "a red circle", "-k", "5", "--json", check=True)
        assert "answered by xmr serve" in warm.stderr
        assert [h["item_id"] for h in json.loads(warm.stdout)] == [h["item_id"] for h in json.loads(local.stdout)]
        by_picture = run_xmr("-v", "--library", str(lib), "search", "--image", str(picture), "--type", "text", "--json", check=True)
        assert "answered by xmr serve" in by_picture.stderr
        assert [h["item_id"] for h in json.loads(by_picture.stdout)] == [h["item_id"] for h in json.loads(local_by_picture.stdout)]
        # usage errors from the server keep their exit code
        bad = run_xmr("--library", str(lib), "search", "x" * 10_001)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert "server stopped" in proc.stderr.read()
    assert not (lib / "server.json").exists()
    with live_server(lib) as (proc, info):
        proc.terminate()  # SIGTERM: as clean as Ctrl-C
        assert proc.wait(30) == 0
    assert not (lib / "server.json").exists()

    # A picture larger than the server accepts: searched in-process instead.
    # Then the server is killed without a chance to clean up: its file is recognised as stale.
    assert picture.stat().st_size > 300
    with live_server(lib, "--max-upload", "300") as (proc, info):
        big = run_xmr("-v", "--library", str(lib), "search", "--image", str(picture), "--type", "text", "--json", check=True)
        assert "not usable (413" in big.stderr
        assert [h["item_id"] for h in json.loads(big.stdout)] == [h["item_id"] for h in json.loads(local_by_picture.stdout)]
        proc.kill()
        proc.wait()
    assert (lib / "server.json").exists()
    stale = run_xmr("-v", "--library", str(lib), "search", "a red circle", "-k", "5", "--json", check=True)
    assert "answered by xmr serve" not in stale.stderr
    assert [h["item_id"] for h in json.loads(stale.stdout)] == [h["item_id"] for h in json.loads(local.stdout)]
    # ... also when its pid now belongs to another live process and nothing listens on the port
    record = json.loads((lib / "server.json").read_text())
    record.update(pid=os.getpid(), url="http://127.0.0.1:9", port=9)
    (lib / "server.json").write_text(json.dumps(record))
    other = run_xmr("-v", "--library", str(lib), "search", "a red circle", "-k", "5", "--json", check=True)
    assert "not usable" in other.stderr and json.loads(other.stdout)


def test_the_server_follows_index_runs_without_a_restart(library):
    lib, media = library
    extra = media / "extra"
    extra.mkdir()
    rng = random.Random(5)
    for n in range(160):
        draw(CONCEPTS[n % len(CONCEPTS)], rng).save(extra / f"more-{n:03d}.png")
    (media / "notes" / "zebra.txt").write_text("a purple star on a green hill")

    with live_server(lib) as (_, info):
        url = info["url"]
        before = get(url + "/api/health")["items"]
        errors: list[str] = []
        latencies: list[float] = []
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    answer = get(url + "/api/search?q=a+green+square&k=20")
                    for hit in answer["hits"]:
                        if not Path(hit["path"]).exists():
                            errors.append(f"hit for a missing file {hit['path']}")
                except Exception as e:  # any failure at all is what this test looks for
                    errors.append(repr(e))
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.01)

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            run_xmr("--library", str(lib), "index", "--batch-size", "8", "--checkpoint-every", "0", "--no-progress", check=True)
        finally:
            stop.set()
            thread.join()
        assert not errors, errors[:5]
        assert len(latencies) > 10 and max(latencies) < 5.0, (len(latencies), max(latencies))

        after = get(url + "/api/health")
        assert after["items"] == before + 161 and after["reloads"] >= 1
        hits = get(url + "/api/search?q=a+purple+star+on+a+green+hill&type=text&k=3")["hits"]
        assert hits[0]["path"].endswith("zebra.txt")

        # deletions: after the writer commits, no result points at a deleted item
        removed = {str(p) for p in sorted(extra.iterdir())[::2]}
        for p in removed:
            os.unlink(p)
        (media / "notes" / "zebra.txt").unlink()
        run_xmr("--library", str(lib), "index", "--no-progress", check=True)
        assert get(url + "/api/health")["items"] == before + 80
        for q in ("a+purple+star+on+a+green+hill", "a+red+circle", "a+blue+square"):
            paths = {h["path"] for h in get(url + f"/api/search?q={q}&k=200")["hits"]}
            assert not paths & removed and not any(p.endswith("zebra.txt") for p in paths)


def test_raw_request_paths_cannot_escape(library):
    lib, media = library
    secret = lib.parent / "secret.txt"
    secret.write_text("TOP-SECRET-4711")
    with live_server(lib) as (_, info):
        conn = http.client.HTTPConnection("127.0.0.1", info["port"], timeout=30)
        attempts = [
            "/static/../../secret.txt", "/static/..%2f..%2fsecret.txt", "/static/%2e%2e/%2e%2e/secret.txt",
            f"/static/{secret}", f"/static/%2F{str(secret).lstrip('/')}", "//" + str(secret), "/..%2f..%2f..%2fetc%2fpasswd",
            "/static/../server.py", "/static/%2e%2e%2fserver.py", "/static/../../../../../../etc/passwd",
            f"/api/items/1%2f..%2f..%2f{secret.name}/media", "/api/items/..%2f..%2fsecret.txt/media",
            f"/api/items/{secret}/media", "/api/items/1/../../secret.txt", "/static/app.js%00.txt",
            "/static/" + "..%5c" * 6 + "secret.txt", "/server.json", "/catalog.db", "/static/../../../lib/server.json",
        ]
        for path in attempts:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
            assert resp.status in (400, 404, 405, 422), (path, resp.status)
            assert "TOP-SECRET" not in body and "root:" not in body and '"pid"' not in body, path
        conn.close()


def test_other_read_commands_ask_the_server_for_another_catalog(tmp_path, random_model, samples):
    """`xmr stats` reads the default SQLite catalog directly (0.1 s, faster than asking); with a
    --db catalog it takes the full path, or asks a server that has that catalog open."""
    lib, db = tmp_path / "lib", f"sqlite:///{tmp_path / 'elsewhere.db'}"
    run_xmr("--library", str(lib), "--db", db, "index", str(samples[0] / "notes"), "--model", random_model, "--no-progress", check=True)
    direct = json.loads(run_xmr("--library", str(lib), "--db", db, "stats", "--json", check=True).stdout)
    with live_server(lib, db=db) as (_, info):
        assert info["db"] == db
        served = run_xmr("-v", "--library", str(lib), "--db", db, "stats", "--json", check=True)
        assert "answered by xmr serve" in served.stderr
        assert json.loads(served.stdout)["items"] == direct["items"] > 0
        # another catalog than the server's: not asked
        other = run_xmr("-v", "--library", str(lib), "search", "a red circle", "--json")
        assert "answered by xmr serve" not in other.stderr
