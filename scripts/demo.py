"""The main job, end to end: build a sample folder, index it, run a few searches.

    python scripts/demo.py        (what `make demo` runs, inside the project venv)

It uses the default model (ViT-B-32, laion2b_s34b_b79k) when its weights are in the local
cache or can be downloaded. When they cannot (no network, empty cache) it says so and falls back
to xmr's demo model, a tiny CLIP trained here on synthetic coloured shapes (about a minute,
seeded, cached after the first run), so the demo always ends in a working search.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from retrieval.encoders import DEFAULT_MODEL, DEFAULT_PRETRAINED  # noqa: E402
from scripts import train_demo_model  # noqa: E402
from scripts.make_samples import make_samples  # noqa: E402
from scripts.synthetic_pdf import text_pdf  # noqa: E402

DEMO_DIR = ROOT / "demo"


def _cached_default_weights() -> str | None:
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg(DEFAULT_MODEL, DEFAULT_PRETRAINED)
    repo = (cfg.get("hf_hub") or "").strip("/")
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        hit = try_to_load_from_cache(repo, name) if repo else None
        if isinstance(hit, str):
            return hit
    return None


def _hub_reachable(timeout: float = 5.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def demo_model_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("xmr", appauthor=False)) / f"demo-model-v{train_demo_model.VERSION}"


def demo_model_ready() -> Path:
    """The demo model's folder, trained first (once, cached) when it is not there."""
    folder = demo_model_dir()
    if not (folder / "open_clip_model.safetensors").is_file():
        print(f"training the demo model into {folder} (seeded; 70 s on 2 idle cores, several minutes on a "
              "busy machine; cached afterwards)", file=sys.stderr)
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        train_demo_model.train(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder


def model_or_demo(model: str | None) -> str:
    """An evaluation's --model, or the demo model (trained first if need be)."""
    return model if model is not None else f"local-dir:{demo_model_ready()}"


def choose_model() -> tuple[list[str], str]:
    """(model flags for `xmr index`, banner text)."""
    forced = os.environ.get("XMR_DEMO_MODEL")
    if forced != "demo" and (_cached_default_weights() or _hub_reachable()):
        return ["--model", DEFAULT_MODEL, "--pretrained", DEFAULT_PRETRAINED], f"{DEFAULT_MODEL} ({DEFAULT_PRETRAINED})"
    if forced != "demo":
        print(
            f"The default weights ({DEFAULT_MODEL}, {DEFAULT_PRETRAINED}) are not in the local cache and the "
            "model hub cannot be reached from here, so they cannot be downloaded.\n"
            "Falling back to xmr's demo model: a tiny CLIP trained on synthetic coloured shapes.\n"
        )
    folder = demo_model_ready()
    return ["--model", f"local-dir:{folder}"], (
        f"local-dir:{folder}  (xmr demo model: a tiny CLIP that knows only colours and shapes)"
    )


def xmr(*args: str, key: dict[str, str] | None = None) -> None:
    """Run the real CLI and show its output; with `key`, say what each hit really shows."""
    print(f"\n$ xmr {' '.join(shlex.quote(a) for a in args)}", flush=True)
    out = subprocess.run([sys.executable, "-m", "retrieval.cli", *args], check=True, stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        truth = next((label for path, label in (key or {}).items() if line.endswith(path)), None)
        print(f"{line}    <- really: {truth}" if truth else line)


def make_demo_video(path: Path) -> str:
    """A silent 20 s video of four scenes (made with PyAV); what it shows, in words. Silent: a
    sound track would make the demo load (or download) the sound model too."""
    from scripts.synthetic import Concept
    from scripts.synthetic_video import Scene, make_video

    path.parent.mkdir(parents=True, exist_ok=True)
    scenes = [Scene(Concept("green", "star"), 6.0), Scene(Concept("red", "circle"), 4.5),
              Scene(Concept("blue", "square"), 5.5), Scene(Concept("yellow", "triangle"), 4.0)]
    make_video(path, scenes, size=(320, 240), audio=False)
    t, parts = 0.0, []
    for scene in scenes:
        parts.append(f"a {scene.concept.color} {scene.concept.shape} from {t:g} s")
        t += scene.seconds
    return ", ".join(parts)


def make_sign(path: Path, line: str) -> None:
    """A photo-like picture with a line of print on a board (DejaVu where installed)."""
    from PIL import ImageDraw, ImageFont

    from scripts.photos import photo

    im = photo(1280, 960, seed=7)
    draw = ImageDraw.Draw(im)
    draw.rectangle((60, 400, 1220, 520), fill="white")
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 52)
    except OSError:
        font = ImageFont.load_default(size=52)
    draw.text((90, 425), line, fill="black", font=font)
    im.save(path, quality=92)


def main() -> None:
    media = DEMO_DIR / "media"
    shutil.rmtree(media, ignore_errors=True)
    # The answer key stays out of the indexed folder: xmr sees only pixels and words.
    manifest = make_samples(media)
    scenes = make_demo_video(media / "videos" / "holiday.mp4")
    pages = ["a blue square", "a green star", "a red circle"]
    text_pdf(media / "documents" / "shapes.pdf", [[p] for p in pages])
    sign = media / "photos" / "IMG_7731.jpg"
    make_sign(sign, "Parking permit ZK-4471")
    key = {str(media / rel): label for rel, label in manifest.items() if rel.startswith("photos/")}
    noted = {label for rel, label in manifest.items() if rel.startswith("notes/note-")}
    flags, banner = choose_model()
    line = "=" * min(100, len(banner) + 16)
    print(f"\n{line}\n  MODEL IN USE: {banner}\n{line}")
    library = DEMO_DIR / ("library-" + ("default" if "--pretrained" in flags else "demo-model"))
    shutil.rmtree(library, ignore_errors=True)
    os.environ["XMR_LIBRARY"] = str(library)
    xmr("index", str(media), *flags)
    xmr("index", str(media))  # incremental: nothing to do the second time
    photos = sorted((media / "photos").iterdir())
    described = next(p for p in photos if key[str(p)] in noted)
    print("\n(file names say nothing about content; the '<- really:' notes come from the demo's answer key)")
    xmr("search", "a red circle", "-k", "5", key=key)
    xmr("search", "a drawing of a blue star", "--type", "image", "-k", "3", key=key)
    print(f"\n{described.name} shows a {key[str(described)]}; which notes talk about it?")
    xmr("search", "--image", str(described), "--type", "text", "-k", "3")
    print(f"\n{photos[2].name} shows a {key[str(photos[2])]}; combined with the words 'a yellow shape':")
    xmr("search", "a yellow shape", "--image", str(photos[2]), "--weight", "0.5", "--type", "image", "-k", "5", key=key)
    print(f"\nholiday.mp4 shows {scenes}; where is the red circle? (one hit per video, its best moments under it)")
    xmr("search", "a red circle", "--type", "video", "--group", "-k", "1")
    print(f"\nshapes.pdf says {', '.join(f'{p!r} on page {n}' for n, p in enumerate(pages, 1))}:")
    xmr("search", "a green star", "--type", "document", "-k", "1")
    print(f"\n{sign.name} is a photo of a sign that reads 'Parking permit ZK-4471' (OCR, when Tesseract's data is"
          " installed); exact words and meaning together (hybrid, the default):")
    xmr("search", "ZK-4471", "-k", "2")
    xmr("stats")
    xmr("check")
    print(f"\ndone. Try your own: XMR_LIBRARY={library} .venv/bin/xmr search \"a green square\"")
    print(f"or the web page: XMR_LIBRARY={library} .venv/bin/xmr serve   (then open http://127.0.0.1:8765)")


if __name__ == "__main__":
    main()
