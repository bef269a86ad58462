"""The real `xmr` command in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import live_server, run_xmr


def test_index_then_search_json(tmp_path, trained_model, samples):
    folder, manifest = samples
    lib = str(tmp_path / "lib")
    proc = run_xmr("--library", lib, "index", str(folder), "--model", trained_model, "--no-progress", check=True)
    assert f"{len(manifest)} new" in proc.stdout and "items/s" in proc.stdout
    # the demo model says once what it can find by meaning (and what it cannot)
    assert proc.stderr.count("xmr's demo model") == 1 and "coloured shapes" in proc.stderr, proc.stderr

    # The library remembers its encoder: no --model from here on (env var route for the library).
    env = {"XMR_LIBRARY": lib}
    hits = json.loads(run_xmr("search", "a photo of a green triangle", "--type", "image", "-k", "3", "--json", env=env, check=True).stdout)
    assert len(hits) == 3
    for h in hits:
        assert set(h) >= {"path", "modality", "score", "snippet", "chunk"}
        assert os.path.isabs(h["path"]) and h["modality"] == "image"
    assert manifest[str(Path(hits[0]["path"]).relative_to(folder))] == "green triangle"

    text_hits = json.loads(run_xmr("search", "a purple square", "--type", "text", "-k", "50", "--json", env=env, check=True).stdout)
    assert text_hits and all(h["modality"] == "text" and h["snippet"] and h["chunk"] is not None for h in text_hits)
    n_chunks = json.loads(run_xmr("stats", "--json", env=env, check=True).stdout)["items_by_modality"]["text"]
    assert len(text_hits) == min(50, n_chunks)  # the filter does not shrink k

    picture = folder / next(rel for rel, label in manifest.items() if rel.startswith("photos/"))
    by_image = json.loads(run_xmr("search", "--image", str(picture), "--type", "text", "-k", "2", "--json", env=env, check=True).stdout)
    assert len(by_image) == 2 and all(h["modality"] == "text" for h in by_image)

    human = run_xmr("search", "a red circle", "--image", str(picture), "--weight", "0.5", "-k", "4", "--mode", "semantic",
                    env=env, check=True).stdout
    assert "score" in human.splitlines()[0] and len([x for x in human.splitlines() if x.strip()[:1].isdigit()]) == 4
    # mixed modalities are ranked by the calibrated score (by meaning alone): the score column,
    # with the cosine beside it
    rows = [x.split() for x in human.splitlines() if x.strip()[:1].isdigit()]
    assert "cos" in human.splitlines()[0]
    assert [float(r[1]) for r in rows] == sorted((float(r[1]) for r in rows), reverse=True)
    hybrid = run_xmr("search", "a red circle", "-k", "4", env=env, check=True)  # the default
    rows = [x.split() for x in hybrid.stdout.splitlines() if x.strip()[:1].isdigit()]
    assert "cos" in hybrid.stdout.splitlines()[0] and [float(r[1]) for r in rows] == sorted((float(r[1]) for r in rows), reverse=True)
    assert "(score orders the list:" in hybrid.stdout  # the columns explained
    only_images = run_xmr("search", "a red circle", "--type", "image", "-k", "3", "--mode", "semantic", env=env, check=True).stdout
    assert "cos" not in only_images.splitlines()[0]  # the score is the cosine

    stats = json.loads(run_xmr("stats", "--json", env=env, check=True).stdout)
    assert stats["files"] == len(manifest)
    assert stats["vectors"] == stats["items"] == sum(stats["items_by_modality"].values())
    assert stats["encoder"]["model"] == trained_model and stats["encoder"]["dim"] == 64
    assert stats["index_type"] == "IDMap2,Flat" and stats["size_bytes"] > 0
    assert "encoder" in run_xmr("stats", env=env, check=True).stdout
    assert run_xmr("check", env=env, check=True).stdout.strip().endswith("ok")


def test_usage_errors_exit_2_without_traceback(tmp_path, trained_model):
    lib = ["--library", str(tmp_path / "lib")]
    cases = [
        ("search", "x", "--type", "movie"),
        ("search", "x", "-k", "0"),
        ("search", "x", "--weight", "0.5"),  # weight without an image
        ("search", "x", "--image", str(tmp_path / "missing.jpg")),
        ("search",),
        ("search", "   "),
        ("index", "--batch-size", "-3", "."),
        ("index", ".", "--model", "NoSuchModel-99"),
        ("--no-such-flag",),
    ]
    for args in cases:
        proc = run_xmr(*lib, *args)
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr and "Usage:" in proc.stderr + proc.stdout, (args, proc.stderr)
    unknown = run_xmr(*lib, "index", ".", "--model", "NoSuchModel-99")
    assert "available:" in unknown.stderr and "ViT-B-32" in unknown.stderr


def test_failures_exit_1_with_a_message(tmp_path, trained_model, random_model):
    lib = ["--library", str(tmp_path / "lib")]
    proc = run_xmr(*lib, "search", "x")
    assert proc.returncode == 1 and "no library" in proc.stderr and "Traceback" not in proc.stderr

    media = tmp_path / "media"
    media.mkdir()
    (media / "a.txt").write_text("a red circle", encoding="utf-8")
    run_xmr(*lib, "index", str(media), "--model", trained_model, "--no-progress", check=True)
    other = run_xmr(*lib, "search", "x", "--model", random_model)
    assert other.returncode == 1 and "was built with" in other.stderr and "Traceback" not in other.stderr


def test_offline_default_weights_explain_what_to_do(tmp_path):
    """With no network and an empty cache, the default model fails with a clear way out."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.txt").write_text("hello", encoding="utf-8")
    proc = run_xmr("--library", str(tmp_path / "lib"), "index", str(media), env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    err = proc.stderr
    assert "ViT-B-32 (laion2b_s34b_b79k)" in err and "--pretrained" in err and "local-dir:" in err


def test_offline_without_the_offline_switch_fails_fast(tmp_path, random_model):
    """No network and an empty cache, and HF_HUB_OFFLINE not set: the default model fails at
    once with xmr's message (not after a minute of hub retries and warnings with URLs), and so
    does the default CLAP model when sounds are met, while the rest is indexed."""
    import subprocess
    import sys

    from scripts.synthetic_audio import synth, write_sound

    media = tmp_path / "media"
    media.mkdir()
    (media / "a.txt").write_text("hello", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="https://hub.invalid")  # cannot be reached, anywhere

    def xmr(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "retrieval.cli", *args], capture_output=True, text=True, env=env,
                              cwd=Path(__file__).parent.parent, timeout=45)  # the retries took 53-86 s

    clip = xmr("--library", str(tmp_path / "lib"), "index", str(media))
    assert clip.returncode == 1 and clip.stderr.startswith("error: could not load the weights for ViT-B-32"), clip.stderr
    assert "model hub cannot be reached" in clip.stderr and "http" not in clip.stderr.replace("https://hub.invalid", "")
    write_sound(media / "tone.wav", synth("tone", 2.0, 16000, 440.0, seed=0), 16000)
    clap = xmr("--library", str(tmp_path / "lib"), "index", str(media), "--model", random_model, "--no-progress")
    assert clap.returncode == 0 and "1 new" in clap.stdout, clap.stderr
    assert "skipping" in clap.stderr and "no audio model: could not load the audio model laion/clap-htsat-unfused" in clap.stderr


def test_stats_loads_neither_sqlalchemy_faiss_nor_torch(tmp_path, random_model, samples):
    from retrieval import Library

    lib_dir = tmp_path / "lib"
    Library(lib_dir, model=random_model, create=True).index([samples[0]])
    probe = (
        "import sys; from retrieval.cli import main; sys.argv=['xmr','--library',%r,'stats']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', 'faiss' in sys.modules, 'torch' in sys.modules, 'sqlalchemy' in sys.modules)"
    ) % str(lib_dir)
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "LOADED False False False" in out
    assert "vectors" in out


def test_stats_on_postgres_loads_neither_faiss_nor_torch(tmp_path, random_model, postgres):
    """On a PostgreSQL catalog `xmr stats` needs SQLAlchemy, but neither FAISS nor torch; a
    catalog whose first run never got to record an encoder says so instead of naming one."""
    import subprocess
    import sys

    from retrieval import Library
    from tests.conftest import ROOT

    url = postgres.new_database()
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.txt").write_text("a red circle", encoding="utf-8")
    Library(tmp_path / "lib", model=random_model, db=url, create=True).index([media])
    probe = (
        "import sys; from retrieval.cli import main; sys.argv=['xmr','--library',%r,'--db',%r,'stats']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', 'faiss' in sys.modules, 'torch' in sys.modules)"
    ) % (str(tmp_path / "lib"), url)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "LOADED False False" in out and "items      1" in out, out
    empty = postgres.new_database()
    Library(tmp_path / "lib2", model=random_model, db=empty, create=True)  # made, never indexed
    said = run_xmr("--library", str(tmp_path / "lib2"), "--db", empty, "stats", check=True).stdout
    assert "encoder    none recorded yet" in said and "ViT-B-32" not in said


def test_what_a_new_user_tripped_over(tmp_path, random_model):
    """Options after the command, a search of a kind the library has none of, `bridge show`
    without sounds, the API's validation errors: each says plainly what is wrong."""
    from fastapi.testclient import TestClient

    from retrieval.server.app import create_app
    from retrieval.server.state import LibraryState

    media = tmp_path / "media"
    media.mkdir()
    (media / "note.txt").write_text("a red circle", encoding="utf-8")
    lib = str(tmp_path / "lib")
    run_xmr("index", str(media), "--library", lib, "--model", random_model, "--no-progress", check=True)
    after = run_xmr("search", "a red circle", "--library", lib, "--json", "--no-server", check=True)
    assert json.loads(after.stdout)[0]["path"].endswith("note.txt")  # --library after the command
    assert run_xmr("stats", "--library", lib, check=True).stdout.startswith(f"library    {lib}")
    sounds = run_xmr("search", "rain", "--type", "audio", "--library", lib, "--no-server", check=True)
    assert "this library has no sounds (it has 1 text)" in sounds.stdout
    with live_server(tmp_path / "lib"):
        assert "this library has no sounds" in run_xmr("search", "rain", "--type", "audio", "--library", lib, check=True).stdout
    bridge = run_xmr("bridge", "show", "--library", lib)
    assert bridge.returncode == 1 and bridge.stderr.startswith("error: this library has no bridge yet"), bridge.stderr
    client = TestClient(create_app(LibraryState(lib, fast_queries=False)), base_url="http://127.0.0.1:8765")
    answer = client.get("/api/search", params={"q": "x", "k": 0})
    assert answer.status_code == 422 and answer.json() == {"detail": "k: Input should be greater than or equal to 1"}
    assert client.get("/api/search", params={"q": "rain", "type": "audio"}).json()["items_by_modality"] == {"text": 1}


def test_bad_queries_get_clear_usage_errors(tmp_path, random_model):
    """The bad inputs a search meets, each on a real library: exit 2, the search command's usage
    line and a message saying what is wrong; the longest allowed query and the largest k just work."""
    media = tmp_path / "media"
    media.mkdir()
    for i in range(3):
        (media / f"{i}.txt").write_text(f"note number {i} about a red circle", encoding="utf-8")
    (media / "photo.png").write_bytes(b"")  # empty: skipped by the index, "not an image" as a query
    lib = ["--library", str(tmp_path / "lib")]
    run_xmr(*lib, "index", str(media), "--model", random_model, "--no-progress", check=True)
    cases = {
        ("",): "empty text in query",
        ("x" * 10_001,): "longer than 10000 characters",
        ("x", "-k", "0"): "0 is not a number of results: give 1 or more",
        ("x", "-k", "-7"): "-7 is not a number of results: give 1 or more",
        ("x", "-k", "many"): "'many' is not a whole number",
        ("--image", str(tmp_path / "missing.jpg")): "does not exist",
        # worded alike in-process and through the server, which sees uploads by their names
        ("--image", str(media / "0.txt")): "image '0.txt': not an image PIL can read",
        ("--image", str(media / "photo.png")): "image 'photo.png': not an image",
        ("x", "--type", "movie"): "'movie' is not one of",
        ("x", "--weight", "nan"): "--weight must be between 0 and 1",
        ("--not", "x"): "nothing to search for",
        ("x", "-k", str(10**30)): "may be at most 10,000",
        ("x", "-k", "9000", "--offset", "1001"): "may be at most 10,000",
        ("x", "--near", "48.8,2.3"): "--near: expected LAT,LON,KM",
        ("x", "--before", "2020-13-45"): "--before: not a date",
        ("x", "--cutoff", "high"): "--cutoff: 'auto' or a minimum score",
        ("x", "--min-size", "lots"): "--min-size: not a size",
    }

    def all_refused(*where: str) -> None:
        for args, message in cases.items():
            proc = run_xmr(*lib, "search", *args, *where)
            shown = (args[0][:20] + "...",) + args[1:] if len(args[0]) > 20 else args
            assert proc.returncode == 2, (shown, proc.returncode, proc.stderr[-300:])
            assert "Traceback" not in proc.stderr and "Usage: xmr search" in proc.stderr, (shown, proc.stderr[-300:])
            assert message in proc.stderr, (shown, proc.stderr[-300:])

    all_refused("--no-server")
    with live_server(tmp_path / "lib"):
        all_refused()  # the same answers when `xmr serve` does the searching
    device = run_xmr(*lib, "--device", "gpu0", "search", "x")
    assert device.returncode == 2 and "'gpu0' is not one of auto, cpu, cuda, cuda:N, mps" in device.stderr
    longest = run_xmr(*lib, "search", "x" * 10_000, "--json", check=True)  # the model reads its first tokens
    assert len(json.loads(longest.stdout)) == 3
    huge = run_xmr(*lib, "search", "red circle", "-k", "10000", "--json", check=True)
    assert len(json.loads(huge.stdout)) == 3  # every item, once
