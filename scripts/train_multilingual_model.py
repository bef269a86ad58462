"""A tiny multilingual open_clip model, made offline: the demo model's picture tower with a
Hugging Face XLM-RoBERTa text tower (2 layers) and a SentencePiece-style Unigram tokenizer built
here, the text tower distilled from the demo model's English text tower on translations (English,
French, German, Spanish, Japanese), the way Multilingual-CLIP and open_clip's xlm-roberta models
were made. Seeded, about half a minute.

The output folder is an ordinary open_clip `local-dir:` model of the same shape as open_clip's
`xlm-roberta-base-ViT-B-32`: open_clip_config.json (text_cfg with hf_model_name and
hf_tokenizer_name), the weights, and the Hugging Face files of the text tower (config.json,
tokenizer.json, tokenizer_config.json) beside them, which open_clip reads for `local-dir:`.

    python -m scripts.train_multilingual_model OUT_DIR --teacher DEMO_MODEL_DIR
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from scripts.synthetic import CONCEPTS

CONTEXT = 24
TEXT_CFG = {"hf_model_name": "xlm-roberta-base", "hf_tokenizer_name": "xlm-roberta-base",
            "hf_pooler_type": "mean_pooler", "hf_proj_type": "linear", "context_length": CONTEXT}
STEPS = 300
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's, in its order

# Colour words (and their forms by gender where the language has them) and shapes.
FR_SHAPES = {"circle": ("cercle", "m"), "square": ("carré", "m"), "star": ("étoile", "f"), "triangle": ("triangle", "m")}
FR_COLOURS = {"red": ("rouge", "rouge"), "green": ("vert", "verte"), "blue": ("bleu", "bleue"),
              "yellow": ("jaune", "jaune"), "orange": ("orange", "orange"), "purple": ("violet", "violette")}
DE_SHAPES = {"circle": ("Kreis", "m"), "square": ("Quadrat", "n"), "star": ("Stern", "m"), "triangle": ("Dreieck", "n")}
DE_COLOURS = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "orange": "orange", "purple": "lila"}
ES_SHAPES = {"circle": ("círculo", "m"), "square": ("cuadrado", "m"), "star": ("estrella", "f"), "triangle": ("triángulo", "m")}
ES_COLOURS = {"red": ("rojo", "roja"), "green": ("verde", "verde"), "blue": ("azul", "azul"),
              "yellow": ("amarillo", "amarilla"), "orange": ("naranja", "naranja"), "purple": ("morado", "morada")}
JA_SHAPES = {"circle": "円", "square": "四角", "star": "星", "triangle": "三角"}
JA_COLOURS = {"red": "赤い", "green": "緑の", "blue": "青い", "yellow": "黄色い", "orange": "オレンジの", "purple": "紫の"}


def phrases(colour: str, shape: str) -> dict[str, list[str]]:
    """Ways to say "a COLOUR SHAPE" in each language, bare and as "a photo of ..."."""
    fr_noun, fr_g = FR_SHAPES[shape]
    fr_adj = FR_COLOURS[colour][fr_g == "f"]
    fr_art = "une" if fr_g == "f" else "un"
    de_noun, de_g = DE_SHAPES[shape]
    de_adj = DE_COLOURS[colour] if colour == "purple" else DE_COLOURS[colour] + ("er" if de_g == "m" else "es")
    es_noun, es_g = ES_SHAPES[shape]
    es_adj = ES_COLOURS[colour][es_g == "f"]
    es_art = "una" if es_g == "f" else "un"
    ja = f"{JA_COLOURS[colour]}{JA_SHAPES[shape]}"
    return {
        "en": [f"a {colour} {shape}", f"a photo of a {colour} {shape}"],
        "fr": [f"{fr_art} {fr_noun} {fr_adj}", f"une photo d'{fr_art} {fr_noun} {fr_adj}"],
        "de": [f"ein {de_adj} {de_noun}", f"ein Foto: ein {de_adj} {de_noun}"],
        "es": [f"{es_art} {es_noun} {es_adj}", f"una foto de {es_art} {es_noun} {es_adj}"],
        "ja": [ja, f"{ja}の写真"],
    }


def corpus() -> list[tuple[int, str]]:
    """(concept index, sentence) for every concept, language and form."""
    out = []
    for i, c in enumerate(CONCEPTS):
        for forms in phrases(c.color, c.shape).values():
            out += [(i, f) for f in forms]
    return out


def build_tokenizer(folder: Path, sentences: list[str]) -> None:
    """A Unigram tokenizer with Metaspace pre-tokenisation and XLM-R's special tokens (what
    XLM-R's SentencePiece model is), saved as tokenizer.json + tokenizer_config.json."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=SPECIALS, unk_token="<unk>")
    tok.train_from_iterator(sentences * 4, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>",
                                   model_max_length=CONTEXT)
    fast.save_pretrained(str(folder))


def train(out_dir: str | Path, teacher: str | Path, steps: int = STEPS, seed: int = 0, verbose: bool = True) -> Path:
    """Make the model in `out_dir` from the demo model in `teacher`; returns the folder."""
    import open_clip
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file, save_file
    from transformers import XLMRobertaConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    teacher = Path(teacher)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    data = corpus()
    build_tokenizer(out, [s for _, s in data])
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(str(out)))
    XLMRobertaConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=CONTEXT + 4, pad_token_id=1, bos_token_id=0,
                     eos_token_id=2, type_vocab_size=1).save_pretrained(str(out))
    teacher_cfg = json.loads((teacher / "open_clip_config.json").read_text())
    model_cfg = {**teacher_cfg["model_cfg"], "text_cfg": TEXT_CFG}
    # The text tower's Hugging Face files are in `out`: open_clip reads them from there (the
    # tokenizer for any local-dir: model; the config because xmr points hf_model_name at it).
    model = open_clip.create_model("local-dir:" + str(teacher), pretrained_text=False)  # the teacher
    tok_teacher = open_clip.get_tokenizer("local-dir:" + str(teacher))
    student = open_clip.CustomTextCLIP(**{**model_cfg, "text_cfg": {**TEXT_CFG, "hf_model_name": str(out),
                                                                    "hf_model_pretrained": False}})
    state = load_file(str(next(teacher.glob("*.safetensors"))))
    student.visual.load_state_dict({k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")})
    student.logit_scale.data.copy_(state["logit_scale"])
    tokenizer = open_clip.tokenizer.HFTokenizer(str(out), context_length=CONTEXT)
    with torch.no_grad():
        targets = model.encode_text(tok_teacher([f"a photo of a {c.color} {c.shape}" for c in CONCEPTS]), normalize=True)
    params = list(student.text.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    student.train()
    t0 = time.perf_counter()
    for step in range(steps):
        batch = rng.sample(data, 64)
        labels = torch.tensor([i for i, _ in batch])
        vec = student.encode_text(tokenizer([s for _, s in batch]), normalize=True)
        # Match the teacher's vector of the concept, and stay nearer to it than to the others'.
        loss = (1 - (vec * targets[labels]).sum(-1)).mean() + F.cross_entropy(20 * vec @ targets.T, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if verbose and (step % 100 == 0 or step == steps - 1):
            print(f"distilling the multilingual text tower: step {step + 1}/{steps}  loss {loss.item():.3f}  "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    student.eval()
    save_file({k: v.contiguous() for k, v in student.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    (out / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": model_cfg, "preprocess_cfg": teacher_cfg["preprocess_cfg"],
         "xmr_multilingual_model": {"seed": seed, "steps": steps, "teacher": teacher_cfg.get("xmr_demo_model")}}, indent=2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--teacher", required=True, help="the demo model's folder (scripts/train_demo_model.py)")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(train(a.out_dir, a.teacher, steps=a.steps, seed=a.seed))


if __name__ == "__main__":
    main()
