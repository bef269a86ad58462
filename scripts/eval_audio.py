"""How well sounds land in the CLIP space: ESC-50 zero-shot and AudioCaps text->audio retrieval.

Two numbers per task: through the bridge and CLIP's text tower (what `xmr search "..."` does for
sounds) and native CLAP (its own text tower: the ceiling the bridge can approach). Prints JSON.

    python scripts/eval_audio.py --esc50 ESC-50-master [--audiocaps test.csv --audiocaps-dir DIR]
        [--model ViT-B-32 --pretrained laion2b_s34b_b79k] [--audio-model laion/clap-htsat-unfused]
        [--bridge LIB/bridge-HASH.safetensors | --captions FILE --method auto]
    python scripts/eval_audio.py --synthetic     # tiny random models, generated folder: the code path only

ESC-50: the folder from github.com/karolpiczak/ESC-50 (meta/esc50.csv, audio/*.wav); prompts
"the sound of a {label}" (these prompts are kept out of xmr's caption corpus). AudioCaps: the
test CSV (audiocap_id, youtube_id, start_time, caption) and a folder of clips named
{youtube_id}.wav or {audiocap_id}.wav (any format xmr reads); clips not found are left out and
counted. The modality gap is estimated from the evaluated clips themselves (unlabelled), as a
library estimates it from its own sounds; pass --no-gap to see the effect.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.kinds.audio import AUDIO_EXTS, audio_windows  # noqa: E402
from retrieval.errors import DecodeError  # noqa: E402

PROMPT = "the sound of a {}"


def embed_clips(clap, paths: list[Path], batch: int = 32) -> tuple[np.ndarray, list[int]]:
    """Mean CLAP vector of each clip's windows; returns vectors and the indices that decoded."""
    out, kept = [], []
    for i, p in enumerate(paths):
        try:
            feats = [clap.features(w.samples) for w in audio_windows(str(p), clap.sampling_rate, clap.window_samples)]
        except DecodeError as e:
            print(f"skipping {p}: {e}", file=sys.stderr)
            continue
        v = np.concatenate([clap.encode_audio(feats[j : j + batch]) for j in range(0, len(feats), batch)]).mean(0)
        out.append(v / max(float(np.linalg.norm(v)), 1e-12))
        kept.append(i)
    return (np.stack(out) if out else np.zeros((0, clap.dim), np.float32)), kept


def read_esc50(folder: Path, limit: int | None) -> tuple[list[Path], list[str], list[str]]:
    rows = list(csv.DictReader(open(folder / "meta" / "esc50.csv", newline="")))
    if limit:
        rows = rows[:limit]
    labels = sorted({r["category"] for r in rows}, key=lambda c: min(int(r["target"]) for r in rows if r["category"] == c))
    return [folder / "audio" / r["filename"] for r in rows], [r["category"] for r in rows], labels


def esc50(clap, clip, bridge, folder: Path, limit: int | None, gap: bool) -> dict:
    paths, truth, labels = read_esc50(folder, limit)
    raw, kept = embed_clips(clap, paths)
    truth_idx = np.array([labels.index(truth[i]) for i in kept])
    prompts = [PROMPT.format(label.replace("_", " ")) for label in labels]
    if gap:
        set_gap(bridge, raw)
    native = (raw @ clap.encode_text(prompts).T).argmax(1)
    bridged = (bridge.map_audio(raw) @ clip.encode_text(prompts).T).argmax(1)
    return {
        "clips": len(kept),
        "classes": len(labels),
        "accuracy_clip_text_via_bridge": float((bridged == truth_idx).mean()),
        "accuracy_native_clap": float((native == truth_idx).mean()),
    }


def set_gap(bridge, raw: np.ndarray) -> None:
    """Shift these clips onto the CLAP text mean the bridge was centred on (as a library does)."""
    if len(raw):
        bridge.gap = (bridge.x_mean - raw.mean(0)).astype(np.float32)


def _ranks(sims: np.ndarray, target: np.ndarray) -> np.ndarray:
    order = np.argsort(-sims, axis=1)
    return np.array([int(np.where(order[i] == target[i])[0][0]) for i in range(len(target))])


def audiocaps(clap, clip, bridge, csv_path: Path, folder: Path, limit: int | None, gap: bool) -> dict:
    rows = list(csv.DictReader(open(csv_path, newline="")))
    files: dict[str, Path] = {}
    missing = 0
    captions: list[tuple[str, str]] = []
    index = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in AUDIO_EXTS}
    for r in rows:
        p = index.get(r.get("youtube_id", "")) or index.get(r.get("audiocap_id", ""))
        if p is None:
            missing += 1
            continue
        files.setdefault(p.stem, p)
        captions.append((p.stem, r["caption"]))
        if limit and len(files) >= limit:
            break
    keys = list(files)
    raw, kept = embed_clips(clap, [files[k] for k in keys])
    keys = [keys[i] for i in kept]
    if gap:
        set_gap(bridge, raw)
    pos = {k: i for i, k in enumerate(keys)}
    captions = [(k, c) for k, c in captions if k in pos]
    texts = [c for _, c in captions]
    target = np.array([pos[k] for k, _ in captions])
    result = {"clips": len(keys), "captions": len(texts), "captions_without_clip": missing}
    for name, q, a in (
        ("clip_text_via_bridge", clip.encode_text(texts) if texts else None, bridge.map_audio(raw)),
        ("native_clap", clap.encode_text(texts) if texts else None, raw),
    ):
        if q is None:
            continue
        ranks = _ranks(q @ a.T, target)
        result[f"r1_{name}"] = float((ranks < 1).mean())
        result[f"r10_{name}"] = float((ranks < 10).mean())
    return result


def make_synthetic(folder: Path) -> tuple[Path, Path, Path, str, str]:
    """A tiny ESC-50-shaped folder, an AudioCaps-shaped CSV, a random CLIP and a random CLAP."""
    from scripts.synthetic_audio import synth, write_sound
    from scripts.tiny_clap import make_tiny_clap
    from scripts.train_demo_model import save_random_model

    esc = folder / "esc50"
    (esc / "meta").mkdir(parents=True)
    (esc / "audio").mkdir()
    classes = [("dog", "tone", 300.0), ("rain", "noise", 0.0), ("siren", "chirp", 600.0), ("clock_tick", "tone", 1200.0)]
    with open(esc / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for target, (label, kind, freq) in enumerate(classes):
            for take in range(3):
                name = f"1-{target}{take}-A-{target}.wav"
                write_sound(esc / "audio" / name, synth(kind, 5.0, 44100, freq * (1 + 0.05 * take), seed=take), 44100)
                w.writerow([name, 1, target, label, "False", name, "A"])
    caps_dir = folder / "audiocaps"
    caps_dir.mkdir()
    caps_csv = folder / "audiocaps_test.csv"
    with open(caps_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
        for i, (label, kind, freq) in enumerate(classes):
            write_sound(caps_dir / f"yt{i}.flac", synth(kind, 10.0, 44100, freq, seed=10 + i), 44100)
            w.writerow([100 + i, f"yt{i}", 0, f"a {label.replace('_', ' ')} is heard"])
            w.writerow([200 + i, f"yt{i}", 0, f"someone records a {label.replace('_', ' ')}"])
        w.writerow([999, "not-downloaded", 0, "a clip that is missing"])
    clip = "local-dir:" + str(save_random_model(folder / "clip"))
    clap = str(make_tiny_clap(folder / "clap"))
    return esc, caps_csv, caps_dir, clip, clap


def main() -> None:
    ap = argparse.ArgumentParser(description="ESC-50 / AudioCaps evaluation of xmr's audio path", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--esc50", type=Path, help="ESC-50 folder (meta/esc50.csv, audio/)")
    ap.add_argument("--audiocaps", type=Path, help="AudioCaps test CSV")
    ap.add_argument("--audiocaps-dir", type=Path, help="folder of AudioCaps clips")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default=None)
    ap.add_argument("--audio-model", default=None)
    ap.add_argument("--bridge", type=Path, help="a bridge file to evaluate (default: fit one from --captions)")
    ap.add_argument("--captions", type=Path, help="caption corpus for fitting [default: xmr's]")
    ap.add_argument("--method", default="auto")
    ap.add_argument("--no-gap", action="store_true", help="do not re-estimate the modality gap on the evaluated clips")
    ap.add_argument("--limit", type=int, help="evaluate only the first N clips")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--synthetic", action="store_true", help="tiny random models and generated data: proves the code path")
    args = ap.parse_args()

    from retrieval.encoders.bridge import Bridge, embed_caption_pairs, fit_bridge, read_captions
    from retrieval.encoders import load_encoder
    from retrieval.encoders.clap import ClapAudioEncoder
    from retrieval.encoders import resolve_spec

    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory() if args.synthetic else None
    if tmp is not None:
        args.esc50, args.audiocaps, args.audiocaps_dir, args.model, args.audio_model = make_synthetic(Path(tmp.name))
        args.pretrained = "none"
    if args.esc50 is None and args.audiocaps is None:
        ap.error("give --esc50 and/or --audiocaps (or --synthetic)")
    if args.audiocaps is not None and args.audiocaps_dir is None:
        ap.error("--audiocaps needs --audiocaps-dir")
    clip = load_encoder(resolve_spec(args.model, args.pretrained), args.device)
    clap = ClapAudioEncoder(args.audio_model or "laion/clap-htsat-unfused", args.device)
    if args.bridge:
        bridge = Bridge.load(args.bridge, clap.identity(), clip.identity())
    else:
        texts = read_captions(args.captions)
        x, y = embed_caption_pairs(clap, clip, texts, clap.identity(), clip.identity())
        bridge = fit_bridge(x, y, method=args.method, manifest={"clap": clap.identity(), "clip": clip.identity(), "captions": {"count": len(texts)}})
    result: dict = {
        "clip": clip.identity(),
        "audio_model": clap.identity(),
        "bridge": bridge.describe(),
        "gap": "none" if args.no_gap else "estimated from the evaluated clips (unlabelled)",
        "synthetic": bool(args.synthetic),
    }
    if args.esc50:
        result["esc50"] = esc50(clap, clip, bridge, args.esc50, args.limit, gap=not args.no_gap)
    if args.audiocaps:
        result["audiocaps"] = audiocaps(clap, clip, bridge, args.audiocaps, args.audiocaps_dir, args.limit, gap=not args.no_gap)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.synthetic:
        result["note"] = "random weights: the numbers are meaningless; this run proves the code path"
    print(json.dumps(result, indent=2, default=str))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
