"""`xmr index --ray` and `xmr serve --ray` on a real two-node Ray cluster on this machine
(scripts/local_cluster.py: `ray start --head` + a second `ray start --address` node with its own
resources, free ports, all killed at the end): the library equals one built without Ray, a
worker node killed mid-run loses nothing, a killed driver leaves the last checkpoint, sharded
search answers exactly what one index answers, and a killed shard actor makes answers partial
until Ray has restarted it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from scripts.crash_test import faces
from tests.conftest import ROOT, live_server, run_xmr

pytest.importorskip("ray")

ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def cluster():
    from scripts.local_cluster import LocalCluster

    with LocalCluster(head_cpus=1) as c, c.driver():  # this process and the xmr it runs hold its token
        c.add_node(cpus=1, resources={"node2": 1})
        yield c


def content(path: Path, db: str | None = None) -> dict[tuple, np.ndarray]:
    """(path, kind, chunk, start, snippet) -> vector, for every item of a library."""
    from sqlalchemy import select

    from indexer.catalog import File, Item
    from retrieval import Library

    with Library(path, db=db) as lib:
        ids, xb = lib.vectors().all_vectors()
        with lib.store.Session() as s:
            rows = {i: rest for i, *rest in s.execute(
                select(Item.id, File.path, Item.modality, Item.chunk, Item.start, Item.snippet).join(File))}
    assert sorted(rows) == sorted(ids.tolist()), "rows and vectors disagree"
    return {tuple(rows[int(i)]): v for i, v in zip(ids, xb)}


def assert_same(a: Path, b: Path, db_a: str | None = None) -> None:
    ca, cb = content(a, db_a), content(b)
    assert set(ca) == set(cb)
    assert max(float(np.abs(ca[k] - cb[k]).max()) for k in ca) < 1e-5


def corpus(folder: Path, samples) -> Path:
    """The sample pictures and notes, a PDF and a short sound."""
    from scripts.synthetic_audio import synth, write_sound
    from scripts.synthetic_pdf import text_pdf

    shutil.copytree(samples[0], folder)
    text_pdf(folder / "report.pdf", [["Quarterly report on red circles"], ["Second page about blue squares"]])
    write_sound(folder / "beep.wav", synth("tone", 2.0))
    return folder


def local_library(path: Path, media: Path, model: str, clap: str) -> Path:
    from retrieval import Library

    with Library(path, model=model, audio_model=clap, create=True) as lib:
        lib.index([media], speech_model="none")
    return path


def xmr_index(lib: Path, *args: str, db: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_xmr("--library", str(lib), *(["--db", db] if db else []), "index", *args, "--no-progress", "--speech-model", "none",
                   env=ENV, timeout=timeout)


def test_ray_index_equals_local_and_follows_changes(cluster, tmp_path, samples, random_model, tiny_clap, postgres,
                                                   face_photos):
    """The Ray run's catalog is a PostgreSQL one (as a cluster shares it), the local one SQLite."""
    media = corpus(tmp_path / "media", samples)
    for name in ("obama.jpg", "biden.jpg"):  # Ray's workers look for no faces: the run catches them up
        shutil.copy(face_photos / name, media / name)
    db = postgres.new_database()
    proc = xmr_index(tmp_path / "ray", str(media), "--model", random_model, "--audio-model", tiny_clap,
                     "--ray", cluster.address, db=db)
    assert proc.returncode == 0, proc.stderr
    assert "0 skipped" in proc.stdout and "2 faces found" in proc.stdout
    assert_same(tmp_path / "ray", local_library(tmp_path / "local", media, random_model, tiny_clap), db)
    assert any(k[1] == "audio" for k in content(tmp_path / "ray", db))
    ray_faces, local_faces = faces(tmp_path / "ray", db), faces(tmp_path / "local")
    assert ray_faces["count"] == 2 and ray_faces == local_faces

    # a second run, with the bytes shipped by the driver: new, changed, moved and deleted files
    (media / "notes" / "new.txt").write_text("a note written after the first run", encoding="utf-8")
    (media / "report.pdf").unlink()
    photo = sorted((media / "photos").iterdir())[0]
    photo.rename(media / photo.name)
    note = sorted((media / "notes").glob("note-*.txt"))[0]
    note.write_text(note.read_text(encoding="utf-8") + " and a changed ending", encoding="utf-8")
    proc = xmr_index(tmp_path / "ray", "--ray", cluster.address, "--ship-bytes", db=db)
    assert proc.returncode == 0, proc.stderr
    assert "1 new, 1 updated, 1 moved, 1 removed" in proc.stdout, proc.stdout
    from retrieval import Library

    with Library(tmp_path / "local") as lib:
        lib.index([])
    assert_same(tmp_path / "ray", tmp_path / "local", db)
    assert run_xmr("--library", str(tmp_path / "ray"), "--db", db, "check").returncode == 0


def pictures(folder: Path, n: int) -> Path:
    from scripts.synthetic import CONCEPTS, draw

    folder.mkdir()
    rng = random.Random(3)
    for i in range(n):
        draw(CONCEPTS[i % len(CONCEPTS)], rng).save(folder / f"{i:03d}.png")
    return folder


def started_index(lib: Path, media: Path, model: str, address: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "retrieval.cli", "--library", str(lib), "index", str(media),
                             "--model", model, "--ray", address, "--no-progress", "--checkpoint-every", "0",
                             "--batch-size", "8"], cwd=ROOT, env={**os.environ, **ENV},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def committed_index(lib: Path) -> str | None:
    """The index file the library's last catalog commit made current, once it exists (an index
    file is written before the commit that names it: its appearing alone is not a checkpoint)."""
    import sqlite3

    db = lib / "catalog.db"
    if not db.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'index_file'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:  # not made yet
        return None
    name = json.loads(row[0]) if row else None
    return name if name and (lib / name).exists() else None


def wait_for_commit(lib: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while committed_index(lib) is None:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.02)


def test_a_driver_without_the_clusters_token_is_refused_clearly(cluster, tmp_path, random_model):
    """The test cluster uses token auth (as Ray does by default once a token exists): a driver
    without the token stops with a message that says so, before the library is touched."""
    lib = tmp_path / "lib"
    proc = run_xmr("--library", str(lib), "index", str(pictures(tmp_path / "pictures", 2)), "--model", random_model,
                   "--ray", cluster.address, "--no-progress", env={**ENV, "RAY_AUTH_MODE": "disabled"}, timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "refused this machine's authentication token" in proc.stderr and "RAY_AUTH_MODE=token" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(lib.glob("vectors-*.faiss"))


def test_killed_driver_then_killed_worker_node(cluster, tmp_path, random_model):
    # Ray hands the driver what is already encoded in a burst: 30 pictures' four checkpoints came
    # within 60 ms; 150 of them stream over ~2 s (measured), a wide window for killing in between
    media = pictures(tmp_path / "pictures", 150)
    lib = tmp_path / "lib"
    # the driver killed after its first checkpoint: the library is that checkpoint
    proc = started_index(lib, media, random_model, cluster.address)
    wait_for_commit(lib, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    check = run_xmr("--library", str(lib), "check")
    assert check.returncode == 0, check.stdout + check.stderr
    with_rows = len(content(lib))
    assert 0 < with_rows < 150

    # resumed with Ray; the second node killed in the middle: Ray retries its tasks elsewhere
    before = committed_index(lib)
    proc = started_index(lib, media, random_model, cluster.address)
    deadline = time.monotonic() + 240
    while proc.poll() is None and committed_index(lib) in (before, None):  # its first checkpoint
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.02)
    cluster.kill_node(0)
    out, err = proc.communicate(timeout=300)
    if proc.returncode != 0:  # failed cleanly: the next run resumes (on the head alone)
        assert "run it again to resume" in err, err
        again = xmr_index(lib, "--ray", cluster.address)
        assert again.returncode == 0, again.stderr
    assert run_xmr("--library", str(lib), "check").returncode == 0
    items = content(lib)
    assert sorted(k[0] for k in items) == sorted(str(p) for p in media.iterdir())  # each picture once
    cluster.add_node(cpus=1, resources={"node2": 1})


def test_sharded_search_is_exact_and_partial_while_a_shard_restarts(cluster, tmp_path, samples, random_model,
                                                                   monkeypatch):
    import ray

    from retrieval import Library
    from retrieval.sharded import open_sharded

    lib_path = tmp_path / "lib"
    with Library(lib_path, model=random_model, create=True) as lib:
        lib.index([samples[0]])
    proc = run_xmr("--library", str(lib_path), "shard", "3", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert len(list((lib_path / "shards").glob("*.faiss"))) == 3

    # in this process: the same searches through shard actors and through the one index
    asks = [dict(request=q, type=t or (), mode=m, path=f, k=8) for q in ("a red circle", "stripes", "the sea")
            for t in (None, "image", "text") for m in ("semantic", "hybrid")
            for f in (None, "*/photos/*")]
    with Library(lib_path) as plain:
        want = [[(h.item_id, h.cosine, h.score) for h in plain.search(**a)] for a in asks]
    try:
        with Library(lib_path) as lib:
            lib.store.remote = open_sharded(cluster.address, lib.store)
            for a, w in zip(asks, want):
                got = [(h.item_id, h.cosine, h.score) for h in lib.search(**a)]
                assert [g[0] for g in got] == [x[0] for x in w], a
                assert np.allclose([g[1] for g in got], [x[1] for x in w], atol=1e-6)
                # the order's score: a standing in standard deviations (float32 sums, divided by a spread)
                assert np.allclose([g[2] for g in got], [x[2] for x in w], atol=1e-4), (a, got, w)
                assert not lib.store.remote.missing
            for a in lib.store.remote.actors:
                ray.kill(a)
    finally:
        ray.shutdown()

    # the server: a shard's actor killed -> partial answers naming it, whole again once restarted
    monkeypatch.setenv("XMR_SHARD_TIMEOUT", "0.5")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    with live_server(lib_path, "--ray", cluster.address) as (_, info):
        def ask(q: str) -> dict:  # a new query each time: the server keeps answers it has given
            url = f"{info['url']}/api/search?q={urllib.request.quote(q)}&k=8&mode=semantic"
            return json.load(urllib.request.urlopen(url, timeout=60))

        whole = ask("a red circle")
        assert not whole.get("partial") and len(whole["hits"]) == 8
        ray.init(address=cluster.address, logging_level="ERROR")
        shard = next((lib_path / "shards").glob("*.1-of-3.faiss"))
        kept = shard.read_bytes()
        try:
            actor = ray.get_actor(f"xmr-shard-{info['pid']}-1-of-3", namespace="xmr")
            shard.write_bytes(b"not a faiss index")  # so that its restarts fail until it is back
            os.kill(ray.get(actor.pid.remote()), signal.SIGKILL)
            for q in ("a green triangle", "a blue square", "a yellow star"):
                got = ask(q)
                assert got["partial"] is True and got["missing_shards"] == [1], got
                assert got["hits"] and all(h["item_id"] % 3 != 1 for h in got["hits"])
            shard.write_bytes(kept)
            deadline, n = time.monotonic() + 60, 0
            while (got := ask(f"stripes {n}")).get("partial"):  # a new actor reads it: answers are whole again
                assert time.monotonic() < deadline, "the shard's actor was not replaced"
                time.sleep(0.5)
                n += 1
            assert {h["item_id"] % 3 for h in got["hits"]} == {0, 1, 2}
        finally:
            shard.write_bytes(kept)
            ray.shutdown()


def test_merge_of_shards_equals_one_index():
    from indexer.shards import split
    from indexer.vectors import VectorIndex
    from retrieval.sharded import merge

    rng = np.random.default_rng(0)
    xb = rng.standard_normal((3000, 32)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    ids = rng.permutation(10_000)[:3000].astype(np.int64)
    whole = VectorIndex.create(32, "Flat")
    whole.add(xb, ids)
    for n in (1, 2, 4, 7):
        parts = []
        for rows in split(ids, n):
            shard = VectorIndex.create(32, "Flat")
            shard.add(xb[rows], ids[rows])
            parts.append(shard)
        for q in xb[:20] + 0.1:
            q = (q / np.linalg.norm(q))[None, :].astype(np.float32)
            D, I = whole.search(q, 25)
            d, i = merge([p.search(q, 25) for p in parts], 25)
            assert i.tolist() == I.tolist() and np.allclose(d, D, atol=1e-6)
