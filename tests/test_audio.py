"""Sounds end to end: decoding, windows, the bridge, queries from and to audio, bad files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from retrieval import Library
from retrieval.query import Query
from scripts.synthetic_audio import synth, write_sound
from tests.conftest import run_xmr

RATE = 44100

# name -> (kind, seconds, freq); expected windows follow the module doc of indexer.kinds.audio
SOUNDS = {
    "tone.wav": ("tone", 3.0, 440.0),
    "long.flac": ("chirp", 25.0, 300.0),
    "noise.ogg": ("noise", 4.0, 0.0),
    "song.mp3": ("tone", 12.0, 660.0),
    "short-tail.wav": ("tone", 10.5, 550.0),
    "silent.wav": ("silence", 2.0, 0.0),
    "blip.flac": ("tone", 0.05, 1000.0),
}
WINDOWS = {
    "tone.wav": [(0.0, 3.0)],
    "long.flac": [(0.0, 10.0), (10.0, 20.0), (15.0, 25.0)],
    "noise.ogg": [(0.0, 4.0)],
    "song.mp3": [(0.0, 10.0), (2.0, 12.0)],
    "short-tail.wav": [(0.0, 10.0)],
    "silent.wav": [(0.0, 2.0)],
    "blip.flac": [(0.0, 0.05)],
}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sounds")
    for i, (name, (kind, seconds, freq)) in enumerate(SOUNDS.items()):
        write_sound(folder / name, synth(kind, seconds, RATE, freq, seed=i), RATE)
    good = (folder / "tone.wav").read_bytes()
    (folder / "empty.wav").write_bytes(b"")
    (folder / "garbage.flac").write_bytes(b"fLaC" + bytes(range(256)) * 4)
    (folder / "header-only.wav").write_bytes(good[:44])
    (folder / "renamed-text.mp3").write_text("this is not a sound at all\n" * 20)
    (folder / "note.txt").write_text("a dog barks at the postman")
    return folder


@pytest.fixture(scope="module")
def audio_lib(tmp_path_factory, media, random_model, tiny_clap):
    lib = Library(tmp_path_factory.mktemp("audio-lib"), model=random_model, audio_model=tiny_clap, create=True)
    skipped: dict[str, str] = {}
    report = lib.index([media], on_skip=lambda p, r: skipped.__setitem__(p.rsplit("/", 1)[1], r))
    return lib, report, skipped


def test_formats_windows_and_timestamps(audio_lib):
    lib, report, skipped = audio_lib
    with lib.Session() as s:
        from sqlalchemy import select

        from indexer.catalog import File, Item

        rows = s.execute(select(File.path, Item.start, Item.end, Item.chunk).join(File).where(Item.modality == "audio").order_by(Item.id)).all()
    got: dict[str, list[tuple[float, float]]] = {}
    for path, start, end, _chunk in rows:
        got.setdefault(path.rsplit("/", 1)[1], []).append((round(start, 3), round(end, 3)))
    for name, windows in WINDOWS.items():
        assert got.get(name) == windows, (name, got.get(name))
    assert lib.check().ok, lib.check().problems


def test_bad_sound_files_are_skipped_with_a_reason(audio_lib):
    lib, report, skipped = audio_lib
    assert set(skipped) == {"empty.wav", "garbage.flac", "header-only.wav", "renamed-text.mp3"}, skipped
    assert "no audio samples" in skipped["header-only.wav"]
    assert all(reason for reason in skipped.values())
    assert report.new == len(SOUNDS) + 1  # the note too
    st = lib.stats()
    assert st["items_by_modality"]["audio"] == sum(len(w) for w in WINDOWS.values())
    # silence is indexed as a sound, with a finite vector
    silent = [h for h in lib.search(Query(audios=[str(lib_media(lib) / "silent.wav")]), k=1, type="audio")]
    assert silent[0].path.endswith("silent.wav") and np.isfinite(silent[0].score)


def lib_media(lib):
    from pathlib import Path

    return Path(lib.stats()["roots"][0])


def test_audio_self_query_returns_the_same_window_first(audio_lib):
    lib, _, _ = audio_lib
    for name in ("tone.wav", "noise.ogg", "blip.flac"):
        hits = lib.search(Query(audios=[str(lib_media(lib) / name)]), k=3, type="audio")
        assert hits[0].path.endswith(name), (name, hits)
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert (hits[0].start, hits[0].end) == WINDOWS[name][0]


def test_text_reaches_sounds_through_the_bridge(audio_lib):
    """The stored audio vector is bridge(CLAP(window)) and a text query scores CLIP(text) against it."""
    lib, _, _ = audio_lib
    from indexer.kinds.audio import audio_windows

    hits = lib.search("a dog barks", k=20, type="audio")
    assert len(hits) == lib.stats()["items_by_modality"]["audio"]
    assert all(h.modality == "audio" for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    clap, bridge = lib.audio_encoder, lib.bridge()
    q = lib.encoder.encode_text(["a dog barks"])[0]
    hit = next(h for h in hits if h.path.endswith("long.flac") and h.start == 10.0)
    window = next(w for w in audio_windows(hit.path, clap.sampling_rate, clap.window_samples) if w.start == 10.0)
    expected = float(bridge.map_audio(clap.encode_audio([clap.features(window.samples)]))[0] @ q)
    assert hit.cosine == pytest.approx(expected, abs=1e-4)


def test_mixed_results_carry_calibrated_scores(audio_lib):
    lib, _, _ = audio_lib
    hits = lib.search("a dog barks", k=5, mode="semantic")  # calibration is the meaning side's
    assert {h.modality for h in lib.search("a dog barks", k=50)} == {"audio", "text"}
    assert all(h.calibrated is not None for h in hits)
    assert [h.calibrated for h in hits] == sorted((h.calibrated for h in hits), reverse=True)
    composite = lib.search(Query(texts=["a dog barks"], audios=[str(lib_media(lib) / "tone.wav")], media_weight=0.9), k=1, type="audio")
    assert composite[0].path.endswith("tone.wav")


def test_a_bridge_for_another_pair_is_refused(tmp_path, audio_lib, media, tiny_clap):
    lib, _, _ = audio_lib
    from tests.conftest import save_random_model

    other_clip = "local-dir:" + str(save_random_model(tmp_path / "other-clip", seed=7))
    other = Library(tmp_path / "other", model=other_clip, audio_model=tiny_clap, create=True)
    other.index([media / "tone.wav"])
    shutil.copy(lib.bridge_path, other.bridge_path)
    fresh = Library(tmp_path / "other")
    from retrieval.encoders.bridge import BridgeMismatchError

    with pytest.raises(BridgeMismatchError, match="xmr bridge fit"):
        fresh.search(Query(audios=[str(media / "tone.wav")]))
    assert not fresh.check().ok


def test_cli_audio_search_json_bridge_and_check(tmp_path, media, random_model, tiny_clap):
    lib_dir = str(tmp_path / "lib")
    run_xmr("--library", lib_dir, "index", str(media), "--model", random_model, "--audio-model", tiny_clap, "--no-progress", check=True)
    out = run_xmr("--library", lib_dir, "search", "--audio", str(media / "long.flac"), "--type", "audio", "--json", "-k", "3", check=True)
    hits = json.loads(out.stdout)
    assert all(h["modality"] == "audio" and h["end"] > h["start"] for h in hits)
    assert hits[0]["path"].endswith("long.flac")
    text = run_xmr("--library", lib_dir, "search", "a siren wails", "--type", "audio", check=True)
    assert "[0:" in text.stdout
    stats = run_xmr("--library", lib_dir, "stats", check=True).stdout
    assert "audio: " in stats and "bridge" in stats and "6000 captions" in stats
    before = json.loads(run_xmr("--library", lib_dir, "stats", "--json", check=True).stdout)["bridge"]["sha256"]
    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(f"a bell rings {i} times near a river" for i in range(200)))
    fit = run_xmr("--library", lib_dir, "bridge", "fit", "--captions", str(captions), "--method", "ridge", "--no-progress", check=True)
    assert "200 captions" in fit.stdout
    after = json.loads(run_xmr("--library", lib_dir, "stats", "--json", check=True).stdout)["bridge"]
    assert after["sha256"] != before and after["captions"] == 200
    assert run_xmr("--library", lib_dir, "check", check=True).stdout.strip() == "ok"
    # the stored sounds moved to the new bridge: a self query still scores 1
    again = json.loads(run_xmr("--library", lib_dir, "search", "--audio", str(media / "tone.wav"), "--type", "audio", "--json", "-k", "1", check=True).stdout)
    assert again[0]["path"].endswith("tone.wav") and again[0]["score"] == pytest.approx(1.0, abs=1e-4)
    # a different CLAP for this library is refused, not mixed in
    bad = run_xmr("--library", lib_dir, "index", "--audio-model", str(tmp_path))
    assert bad.returncode == 1 and "indexed with" in bad.stderr


def test_swapped_bridge_file_is_found_and_repaired(tmp_path, media, random_model, tiny_clap):
    lib = Library(tmp_path / "lib", model=random_model, audio_model=tiny_clap, create=True)
    lib.index([media / "tone.wav", media / "long.flac"])
    saved = (tmp_path / "bridge-copy")
    shutil.copy(lib.bridge_path, saved)
    with lib.write_lock(), lib.Session() as s:
        captions = tmp_path / "c.txt"
        captions.write_text("\n".join(f"water drips {i} times in a cave" for i in range(100)))
        lib.fit_bridge(s, captions=captions, method="ridge")
        lib.store.commit(s)
    shutil.copy(saved, lib.bridge_path)  # as if a crash hit between the bridge file and the commit
    fresh = Library(tmp_path / "lib")
    report = fresh.check()
    assert any("another bridge" in p for p in report.problems)
    assert fresh.check(repair=True).repaired
    assert Library(tmp_path / "lib").check().ok


def test_a_crash_between_a_new_bridge_file_and_its_commit_changes_nothing(tmp_path, media, random_model, tiny_clap, monkeypatch):
    """The new bridge is written under its own name; until the commit names it, the old one rules."""
    from sqlalchemy.orm import Session

    lib = Library(tmp_path / "lib", model=random_model, audio_model=tiny_clap, create=True)
    lib.index([media / "tone.wav", media / "long.flac"])
    old_bridge, old_index = lib.bridge_path, lib.index_path
    old_hits = [(h.item_id, round(h.score, 5)) for h in lib.search(vector=lib.item_vector(1), k=5)]

    def crash(session):
        raise KeyboardInterrupt  # stands for a SIGKILL: nothing after this line runs

    captions = tmp_path / "c.txt"
    captions.write_text("\n".join(f"water drips {i} times in a cave" for i in range(100)))
    with lib.write_lock(), lib.Session() as s:
        lib.fit_bridge(s, captions=captions, method="ridge")
        monkeypatch.setattr(Session, "commit", crash)
        with pytest.raises(KeyboardInterrupt):
            lib.store.commit(s)
    monkeypatch.undo()

    fresh = Library(tmp_path / "lib")
    assert (fresh.bridge_path, fresh.index_path) == (old_bridge, old_index)
    assert fresh.check().ok, fresh.check().problems
    assert [(h.item_id, round(h.score, 5)) for h in fresh.search(vector=fresh.item_vector(1), k=5)] == old_hits
    strays = fresh.store.stray_files()
    assert any(p.name.startswith("bridge-") for p in strays) and any(p.name.startswith("vectors-") for p in strays)
    fresh.index([media / "tone.wav", media / "long.flac"])  # the next writer tidies up
    assert not fresh.store.stray_files() and old_bridge.exists()


def test_no_audio_model_skips_sounds_and_keeps_the_rest(tmp_path, media, random_model):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(media / "tone.wav", folder)
    shutil.copy(media / "noise.ogg", folder)
    shutil.copy(media / "note.txt", folder)
    proc = run_xmr("--library", str(tmp_path / "lib"), "index", str(folder), "--model", random_model,
                   "--audio-model", "laion/clap-htsat-unfused", "--no-progress", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("skipping") == 2
    assert proc.stderr.count("no audio model: could not load the audio model laion/clap-htsat-unfused") == 1
    assert "save_pretrained" in proc.stderr
    assert "1 new" in proc.stdout and "Traceback" not in proc.stderr
    # decode processes hand the reason to the run, which says it once (not once per process)
    for i in range(4):
        shutil.copy(media / "tone.wav", folder / f"tone{i}.wav")
    proc = run_xmr("--library", str(tmp_path / "lib2"), "index", str(folder), "--model", random_model,
                   "--audio-model", "laion/clap-htsat-unfused", "--no-progress", "--decoder", "processes",
                   "--workers", "2", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("skipping") == 6, proc.stderr
    assert proc.stderr.count("no audio model: could not load the audio model") == 1, proc.stderr




def _to_m4a(source, target) -> None:
    """`source` (any sound) as AAC in an MPEG-4 file, encoded by PyAV: no ffmpeg program needed."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w") as out:
        stream = out.add_stream("aac", rate=44100, layout="mono")
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=44100)
        for frame in src.decode(audio=0):
            for f in resampler.resample(frame):
                f.pts = None
                out.mux(stream.encode(f))
        out.mux(stream.encode(None))


def test_formats_beyond_soundfile_go_through_pyav(tmp_path, media, random_model, tiny_clap):
    folder = tmp_path / "m4a"
    folder.mkdir()
    _to_m4a(media / "long.flac", folder / "voice.m4a")
    (folder / "broken.m4a").write_bytes((folder / "voice.m4a").read_bytes()[:300])
    lib = Library(tmp_path / "lib", model=random_model, audio_model=tiny_clap, create=True)
    reasons: list[str] = []
    report = lib.index([folder], on_skip=lambda p, r: reasons.append(r))
    assert report.new == 1 and report.skipped == 1
    assert "soundfile or FFmpeg" in reasons[0] or "no audio" in reasons[0], reasons
    hits = lib.search(Query(audios=[str(folder / "voice.m4a")]), k=5, type="audio")
    # 25 s of sound: three windows, the encoder's priming samples aside
    assert [(round(h.start), round(h.end)) for h in sorted(hits, key=lambda h: h.start)] == [(0, 10), (10, 20), (15, 25)]


def test_eval_script_runs_on_synthetic_data():
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.run([sys.executable, "scripts/eval_audio.py", "--synthetic"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["esc50"]["clips"] == 12 and out["esc50"]["classes"] == 4
    for key in ("accuracy_clip_text_via_bridge", "accuracy_native_clap"):
        assert 0.0 <= out["esc50"][key] <= 1.0
    assert out["audiocaps"]["captions"] == 8 and out["audiocaps"]["captions_without_clip"] == 1
    assert 0.0 <= out["audiocaps"]["r1_clip_text_via_bridge"] <= out["audiocaps"]["r10_clip_text_via_bridge"] <= 1.0


def test_sound_to_picture_and_picture_to_sound(tmp_path, media, random_model, tiny_clap):
    from PIL import Image

    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(media / "tone.wav", folder)
    shutil.copy(media / "long.flac", folder)
    Image.new("RGB", (48, 48), (200, 30, 30)).save(folder / "red.png")
    Image.new("RGB", (48, 48), (30, 30, 200)).save(folder / "blue.png")
    lib = Library(tmp_path / "lib", model=random_model, audio_model=tiny_clap, create=True)
    lib.index([folder])
    pictures = lib.search(Query(audios=[str(folder / "tone.wav")]), k=5, type="image")
    assert sorted(h.path.rsplit("/", 1)[1] for h in pictures) == ["blue.png", "red.png"]
    sounds = lib.search(Query(images=[str(folder / "red.png")]), k=10, type="audio")
    assert len(sounds) == 4 and all(h.start is not None for h in sounds)
    # the scores are the plain cosines of the two vectors in the shared space
    img_vec = lib.vectors().reconstruct(pictures[0].item_id)
    assert pictures[0].score == pytest.approx(float(img_vec @ lib.embed_audio_file(str(folder / "tone.wav"))), abs=1e-4)


def test_a_first_schema_library_gains_the_audio_table(tmp_path, random_model, media):
    from sqlalchemy import inspect, text

    from indexer.catalog import SCHEMA_VERSION, get_meta

    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([media / "note.txt"])
    with lib.engine.begin() as conn:  # turn it back into a schema-1 catalog
        conn.execute(text("DROP TABLE audio_raw"))
        conn.execute(text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))
    lib.engine.dispose()
    again = Library(tmp_path / "lib")
    assert "audio_raw" in inspect(again.engine).get_table_names()
    with again.Session() as s:
        assert get_meta(s, "schema_version") == SCHEMA_VERSION
    assert again.check().ok


