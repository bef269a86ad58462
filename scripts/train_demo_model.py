"""Train xmr's demo model: a tiny open_clip CLIP on synthetic coloured shapes (seeded, ~1 min).

It is what `make demo` falls back to when the default weights cannot be downloaded, and what
the tests use to prove that a text query really finds the right picture. The output folder is
an ordinary open_clip `local-dir:` model (open_clip_config.json + open_clip_model.safetensors).

    python -m scripts.train_demo_model OUT_DIR [--steps N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from scripts.synthetic import CONCEPTS, draw

IMAGE_SIZE = 32
MODEL_CFG = {
    "embed_dim": 64,
    # A small ResNet at 32 px: on this task it learns shape (97-99 % zero-shot accuracy on
    # fresh pictures, seeds 0-2) in 800 steps, where a ViT of the same cost learns only colour.
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": [1, 1, 1, 1], "width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
PREPROCESS_CFG = {
    "size": IMAGE_SIZE,
    "mode": "RGB",
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
    "fill_color": 0,
}
LR = 4e-3
STEPS = 800
VERSION = 1  # bump when the recipe changes, so cached copies are rebuilt


def save_random_model(folder: str | Path, seed: int = 0) -> Path:
    """The same architecture with random weights, as a `local-dir:` folder (plumbing and timing)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**MODEL_CFG)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}))
    return folder


def model_cfg(width: int | None = None) -> dict:
    """The architecture; `width` scales the picture tower (16: the demo model's) and the text
    tower with it (another size of the same recipe, for evaluations across models)."""
    if width is None:
        return MODEL_CFG
    return {**MODEL_CFG, "vision_cfg": {**MODEL_CFG["vision_cfg"], "width": width},
            "text_cfg": {**MODEL_CFG["text_cfg"], "width": width * 4, "heads": max(2, width // 8)}}


def train(out_dir: str | Path, steps: int = STEPS, seed: int = 0, log_every: int = 100, verbose: bool = True,
          width: int | None = None) -> Path:
    """Train and save the model into `out_dir`; returns the folder."""
    import open_clip
    import torch
    import torch.nn.functional as F
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    cfg = model_cfg(width)
    model = open_clip.CLIP(**cfg)
    preprocess = image_transform_v2(PreprocessCfg(**PREPROCESS_CFG), is_train=False)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the standard CLIP BPE, context 77

    # A pool of pictures per concept, reused across steps: drawing is the slow part.
    pool_per_concept = 48
    pool = [[preprocess(draw(c, rng)) for _ in range(pool_per_concept)] for c in CONCEPTS]
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    model.train()
    t0 = time.perf_counter()
    n = len(CONCEPTS)
    for step in range(steps):
        # Every concept exactly once per batch, so no in-batch negative is secretly a positive.
        images = torch.stack([pool[i][rng.randrange(pool_per_concept)] for i in range(n)])
        texts = tokenizer([c.caption(rng) for c in CONCEPTS])
        img = model.encode_image(images, normalize=True)
        txt = model.encode_text(texts, normalize=True)
        logits = model.logit_scale.exp() * img @ txt.T
        labels = torch.arange(n)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
        if verbose and (step % log_every == 0 or step == steps - 1):
            spent = time.perf_counter() - t0
            left = spent / (step + 1) * (steps - step - 1)  # at the pace so far (a busy machine is slower)
            print(f"training the demo model: step {step + 1}/{steps}  loss {loss.item():.3f}  "
                  f"{spent:.0f} s, about {left:.0f} s left", flush=True)
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    (out / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": PREPROCESS_CFG,
                    "xmr_demo_model": {"version": VERSION, "seed": seed, "steps": steps, "width": width}}, indent=2)
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, help="picture tower width (default 16; the text tower scales with it)")
    a = ap.parse_args()
    print(train(a.out_dir, steps=a.steps, seed=a.seed, width=a.width))


if __name__ == "__main__":
    main()
