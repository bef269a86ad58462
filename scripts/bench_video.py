"""Video indexing benchmark: end to end against decoding alone and the model alone.

    python scripts/bench_video.py --minutes 1 --model ViT-B-32 [--size 1920x1080] [--fps 30] [--ocr]

Prints JSON. The clip is H.264 (x264, 8-bit 4:2:0, made here by PyAV) with a new scene every
5 s: one of the demo's drawn shapes, drifting a pixel a frame so no two frames are equal. It has
no sound track: no CLAP weights can be had here, and a video's sound costs what a sound file of
the same length does. Speeds are seconds of video per wall-clock second ("x real time").
decode_only is xmr's decoding of the video (every frame decoded, samples scaled, scene cuts
found) on all cores; model_only the picture encoder on the shots' ready tensors. The two share
the cores, so the best end to end can do is ideal = 1 / (1/model_only + 1/decode_only).
With --ocr, shots' frames are also read for words on screen (behind the cheap text test), and
the clip is indexed again with --no-ocr: `ocr_vs_no_ocr` is the speed kept (the clip holds no
print, so this is the text test's cost).

`--memory-hours H` measures instead whether memory follows a video's length: `xmr index` (a
separate process, a tiny random model) of a 10-minute and of an H-hour video (320x180, 2 frames a
second, a new scene every 7 s), each alone; prints both peak RSS (wait4's ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.kinds.video import video_segments  # noqa: E402
from retrieval import Library  # noqa: E402
from retrieval.encoders import EncoderSpec, load_encoder  # noqa: E402
from scripts.synthetic import CONCEPTS, draw  # noqa: E402


def make_clip(path: Path, minutes: float, size: tuple[int, int], fps: int, scene_s: float = 5.0) -> int:
    """A clip of `minutes`, a scene every `scene_s` seconds; returns its number of frames."""
    import av
    import numpy as np

    rng = random.Random(0)
    frames = int(minutes * 60 * fps)
    per_scene = int(scene_s * fps)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "23"}
        still = None
        for i in range(frames):
            if i % per_scene == 0:
                still = np.asarray(draw(rng.choice(CONCEPTS), rng, size=size[1]).resize(size))
            frame = av.VideoFrame.from_ndarray(np.roll(still, i % per_scene, axis=1), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    return frames


def _peak_rss_mib(cmd: list[str]) -> tuple[float, float, str]:
    """Run `cmd`; (peak RSS in MiB, seconds, stdout)."""
    import subprocess

    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
    out = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd} failed")
    return usage.ru_maxrss / 1024, time.perf_counter() - t, out.strip()


def memory(hours: float, work: Path) -> dict[str, object]:
    from scripts.churn import random_model

    model = random_model(work / "model")
    result: dict[str, object] = {"model": "tiny random open_clip (memory of the pipeline, not of a big model)"}
    for name, minutes in (("short", 10.0), ("long", hours * 60)):
        folder = work / name
        folder.mkdir()
        t = time.perf_counter()
        make_clip(folder / f"{name}.mp4", minutes, (320, 180), 2, scene_s=7.0)
        gen = time.perf_counter() - t
        rss, secs, out = _peak_rss_mib([sys.executable, "-m", "retrieval.cli", "--library", str(work / f"lib-{name}"),
                                         "index", str(folder), "--model", model, "--no-progress"])
        result[name] = {"video_minutes": minutes, "peak_rss_mib": round(rss, 1), "index_s": round(secs, 1),
                        "summary": out, "clip_generation_s": round(gen, 1)}
    result["long_vs_short_rss"] = round(result["long"]["peak_rss_mib"] / result["short"]["peak_rss_mib"], 3)  # type: ignore[index]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--memory-hours", type=float, help="measure peak memory for a video this long instead")
    ap.add_argument("--ocr", action=argparse.BooleanOptionalAction, default=False,
                    help="index with words on screen read (OCR), and again without: their speed ratio")
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="xmr-bench-video-"))
    try:
        if a.memory_hours:
            print(json.dumps(memory(a.memory_hours, work), indent=2))
            return
        folder = work / "videos"
        folder.mkdir()
        clip = folder / "clip.mp4"
        t = time.perf_counter()
        frames = make_clip(clip, a.minutes, (w, h), a.fps)
        gen_s = time.perf_counter() - t
        seconds = frames / a.fps
        spec = EncoderSpec(model=a.model, pretrained=None if a.pretrained == "none" else a.pretrained)
        enc = load_encoder(spec, a.device)

        t = time.perf_counter()
        shots = list(video_segments(str(clip), enc.input_size))
        decode_s = time.perf_counter() - t
        tensors = [enc.preprocess_image(s.payload) for s in shots]
        enc.encode_images(tensors[: a.batch_size])  # warm-up
        t = time.perf_counter()
        for i in range(0, len(tensors), a.batch_size):
            enc.encode_images(tensors[i : i + a.batch_size])
        model_s = time.perf_counter() - t

        lib = Library(work / "lib", encoder=enc, create=True)
        t = time.perf_counter()
        report = lib.index([folder], batch_size=a.batch_size, ocr=a.ocr, speech_model="none")
        end_s = time.perf_counter() - t
        ocr_cost = {}
        if a.ocr:  # the same clip (no print in it) without OCR: what reading words on screen costs
            t = time.perf_counter()
            Library(work / "lib-no-ocr", encoder=enc, create=True).index([folder], batch_size=a.batch_size, ocr=False,
                                                                          speech_model="none")
            no_ocr_s = time.perf_counter() - t
            ocr_cost = {"x_real_time_no_ocr": round(seconds / no_ocr_s, 2), "ocr_vs_no_ocr": round(no_ocr_s / end_s, 3)}
        decode_only, model_only, end_to_end = seconds / decode_s, seconds / model_s, seconds / end_s
        ideal = 1 / (1 / decode_only + 1 / model_only)
        print(json.dumps({
            "video_seconds": round(seconds, 1), "size": a.size, "fps": a.fps, "file_mb": round(clip.stat().st_size / 1e6, 1),
            "shots": len(shots), "items": report.items, "model": spec.describe(), "device": enc.device,
            "cpu_count": os.cpu_count(),
            "x_real_time": round(end_to_end, 2),
            "decode_only_x_real_time": round(decode_only, 2),
            "decode_only_frames_per_s": round(frames / decode_s, 1),
            "model_only_x_real_time": round(model_only, 2),
            "ideal_x_real_time": round(ideal, 2),
            "end_to_end_vs_ideal": round(end_to_end / ideal, 3),
            "clip_generation_s": round(gen_s, 1), "ocr": a.ocr, **ocr_cost,
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
