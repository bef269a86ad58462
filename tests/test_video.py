"""Videos made here (PyAV: H.264 scenes of the demo model's shapes, a tone per scene), indexed with
the model trained in this session and a tiny CLAP: found by text, picture, sound and video."""

from __future__ import annotations

import json
import random
import shutil

import pytest

from retrieval import Library
from retrieval.query import Query
from scripts.synthetic import Concept, draw
from scripts.synthetic_audio import synth, write_sound
from scripts.synthetic_video import Scene, make_video
from tests.conftest import run_xmr

SCENES = [Scene(Concept("green", "star"), 10.4, 300.0), Scene(Concept("red", "circle"), 10.3, 1200.0),
          Scene(Concept("blue", "square"), 9.0, 3000.0)]


@pytest.fixture(scope="module")
def video_lib(tmp_path_factory, trained_model, tiny_clap):
    media = tmp_path_factory.mktemp("videos")
    cuts = make_video(media / "shapes.mp4", SCENES, size=(192, 144), seed=4)
    make_video(media / "other.mkv", [Scene(Concept("yellow", "triangle"), 3.0, 500.0)], seed=5)
    lib = Library(tmp_path_factory.mktemp("video-lib"), model=trained_model, audio_model=tiny_clap, create=True)
    # Scenes of about 10 s (the tiny CLAP's window, so each tone has a window of its own): a
    # --segment-max above that keeps one shot per scene (test_long_shots_are_split checks 10 s).
    report = lib.index([media], segment_max=12.0, speech_model="none")  # not about speech (test_words is)
    assert report.skipped == 0 and report.new == 2
    return lib, media, cuts


def _items(lib, name):
    from sqlalchemy import select

    from indexer.catalog import File, Item

    with lib.Session() as s:
        return s.execute(select(Item.embedder, Item.start, Item.end).join(File).where(File.path.endswith(name))
                         .order_by(Item.start)).all()


def _truth(t: float) -> int:
    """The scene playing at `t` seconds."""
    end = 0.0
    for i, scene in enumerate(SCENES):
        end += scene.seconds
        if t < end:
            return i
    return len(SCENES) - 1


def test_shots_are_cut_at_the_scene_changes(video_lib):
    lib, _, cuts = video_lib
    shots = [(a, b) for e, a, b in _items(lib, "shapes.mp4") if e == "image"]
    starts = [a for a, _ in shots]
    for cut in cuts:  # every true cut has a boundary within 0.5 s
        assert min(abs(a - cut) for a in starts) <= 0.5, (cut, shots)
    for a, b in shots:
        assert b - a <= 12.0 + 1e-6
        # a shot never spans a cut by more than a sample
        assert _truth(a + 0.01) == _truth(b - 0.3), (a, b, cuts)
    sounds = [(a, b) for e, a, b in _items(lib, "shapes.mp4") if e == "audio"]
    assert [(round(a), round(b)) for a, b in sounds][:2] == [(0, 10), (10, 20)]


def test_long_shots_are_split_and_short_tails_join(tmp_path):
    from indexer.kinds.video import video_segments

    make_video(tmp_path / "long.mp4", [Scene(Concept("red", "circle"), 23.5), Scene(Concept("blue", "star"), 0.5)], audio=False)
    shots = [(s.start, s.end) for s in video_segments(str(tmp_path / "long.mp4"), 64)]
    assert [round(a, 2) for a, _ in shots] == [0.0, 10.0, 20.0] and round(shots[-1][1], 1) == 24.0
    shorter = [(s.start, s.end) for s in video_segments(str(tmp_path / "long.mp4"), 64, segment_max=5.0)]
    assert len(shorter) == 5 and all(b - a <= 5.0 + 1e-6 for a, b in shorter)


def test_a_text_finds_the_scene_with_its_start(video_lib):
    lib, _, cuts = video_lib
    hits = lib.search("a red circle", k=3, type="video")
    best = hits[0]
    assert best.modality == "video" and best.track == "picture" and best.path.endswith("shapes.mp4")
    assert abs(best.start - cuts[0]) <= 1.0, (best, cuts)


def test_a_picture_finds_its_scene(video_lib, tmp_path):
    lib, _, cuts = video_lib
    draw(Concept("blue", "square"), random.Random(9), size=160).save(tmp_path / "blue.png")
    best = lib.search(Query(images=[str(tmp_path / "blue.png")]), k=3, type="video")[0]
    assert _truth((best.start + best.end) / 2) == 2, best


def test_a_tone_finds_its_scene_through_the_sound_track(video_lib, tmp_path):
    lib, _, _ = video_lib
    write_sound(tmp_path / "tone.wav", synth("tone", 10.0, 44100, 1200.0), 44100)
    hits = lib.search(Query(audios=[str(tmp_path / "tone.wav")]), k=5, type="video")
    heard = [h for h in hits if h.track == "sound"]
    assert heard and _truth((heard[0].start + heard[0].end) / 2) == 1, hits


def test_grouped_search_and_a_video_as_the_query(video_lib):
    lib, media, _ = video_lib
    grouped = lib.search("a red circle", k=5, type="video", group=True)
    assert [h.path for h in grouped].count(str(media / "shapes.mp4")) == 1
    assert grouped[0].segments and grouped[0].segments[0]["start"] == grouped[0].start
    hits = lib.search(Query(videos=[str(media / "other.mkv")]), k=3, type="video")
    assert hits[0].path.endswith("other.mkv")


def test_cli_json_stats_check_moves_and_deletions(video_lib, tmp_path):
    lib, media, _ = video_lib
    base = ["--library", str(lib.path)]
    out = run_xmr(*base, "search", "a red circle", "--type", "video", "--json", "-k", "2", "--no-server", check=True)
    hit = json.loads(out.stdout)[0]
    assert {"path", "modality", "score", "start", "end"} <= set(hit) and hit["modality"] == "video"
    grouped = json.loads(run_xmr(*base, "search", "a red circle", "--group", "--json", "--no-server", check=True).stdout)
    assert len({h["path"] for h in grouped}) == len(grouped)
    stats = json.loads(run_xmr(*base, "stats", "--json", check=True).stdout)
    assert stats["files_by_modality"]["video"] == 2 and stats["hours_by_modality"]["video"] > 0.008
    assert run_xmr(*base, "check", check=True).stdout.strip() == "ok"
    bad = run_xmr(*base, "index", "--segment-max", "0.5")
    assert bad.returncode == 2 and "--segment-max" in bad.stderr
    with lib.Session() as s:  # the fixture's --segment-max 12 is the library's from now on
        from indexer.catalog import get_meta

        assert get_meta(s, "segment_max") == 12.0
    # moved: kept without decoding; deleted: gone
    copy = tmp_path / "copy"
    shutil.copytree(media, copy)
    lib2 = Library(tmp_path / "lib2", model=lib.models.spec.model, create=True)
    lib2.index([copy])
    (copy / "shapes.mp4").rename(copy / "moved.mp4")
    (copy / "other.mkv").unlink()
    report = lib2.index([copy])
    assert (report.moved, report.removed, report.new) == (1, 1, 0)
    assert lib2.check().ok


def test_rotation_is_applied_and_variable_frame_rates_keep_true_times(tmp_path):
    import av
    import numpy as np
    from fractions import Fraction

    from indexer.kinds.video import frame_at, video_segments

    make_video(tmp_path / "turned.mp4", [Scene(Concept("red", "circle"), 2.0)], size=(160, 96), audio=False, rotation=90)
    picture = next(iter(video_segments(str(tmp_path / "turned.mp4"), 64))).payload
    assert picture.height > picture.width  # shot in portrait, stored in landscape + a display matrix
    assert frame_at(str(tmp_path / "turned.mp4"), 1.0, 64).size == picture.size

    # Frames at irregular times (a phone's variable frame rate): a black stretch, then white from 3.1 s.
    with av.open(str(tmp_path / "vfr.mkv"), "w") as out:
        v = out.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        v.time_base = Fraction(1, 1000)
        times = [0, 40, 300, 310, 1500, 2900, 3000, 3100, 3130, 3700, 4400, 5200, 6000]
        for t in times:
            level = 255 if t >= 3100 else 0
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), level, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    shots = [(s.start, s.end) for s in video_segments(str(tmp_path / "vfr.mkv"), 64)]
    assert len(shots) == 2 and abs(shots[1][0] - 3.1) < 0.01, shots


def test_a_decoder_that_can_decodes_at_the_models_size(tmp_path, monkeypatch):
    import indexer.kinds.video as video

    make_video(tmp_path / "mjpeg.avi", [Scene(Concept("red", "circle"), 1.5)], size=(1280, 720), codec="mjpeg", audio=False)
    decoded: list[int] = []
    real = video._model_frame
    monkeypatch.setattr(video, "_model_frame", lambda frame, size: (decoded.append(frame.height), real(frame, size))[1])
    shots = list(video.video_segments(str(tmp_path / "mjpeg.avi"), 224))
    assert decoded and set(decoded) == {360}  # JPEG frames decoded at half size: 360 still covers 224
    assert shots[0].payload.size == (398, 224)
