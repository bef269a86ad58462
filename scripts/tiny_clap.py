"""A complete tiny CLAP checkpoint with random weights, written the way users' own are:
ClapModel.save_pretrained + ClapProcessor.save_pretrained (feature extractor + a byte-level BPE
tokenizer trained here with `tokenizers`). For tests and the synthetic eval; no network.

    python -m scripts.tiny_clap DIR
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from retrieval.encoders.bridge import read_captions
from retrieval.encoders.clap import _quiet_transformers

TEXT_CFG = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=80)
AUDIO_CFG = dict(
    hidden_size=32, depths=[1, 1], num_attention_heads=[2, 2], spec_size=256, num_mel_bins=64,
    patch_embeds_hidden_size=16, window_size=8, enable_fusion=False,
)
PROJECTION_DIM = 32


def make_tiny_clap(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizerFast

    _quiet_transformers()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        read_captions(), vocab_size=600, min_frequency=2, show_progress=False,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        tokenizer = RobertaTokenizerFast(
            vocab_file=f"{tmp}/vocab.json", merges_file=f"{tmp}/merges.txt", model_max_length=77
        )
    config = ClapConfig(
        text_config={**TEXT_CFG, "vocab_size": len(tokenizer)},
        audio_config=AUDIO_CFG,
        projection_dim=PROJECTION_DIM,
    )
    torch.manual_seed(seed)
    model = ClapModel(config).eval()
    # Unfused CLAP checkpoints cut long input at random; xmr never hands it more than a window.
    processor = ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc"), tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    print(make_tiny_clap(sys.argv[1] if len(sys.argv) > 1 else "tiny-clap"))
