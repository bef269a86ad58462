"""Multilingual queries: an open_clip model whose text tower is a Hugging Face XLM-RoBERTa with
its own tokenizer (the shape of open_clip's xlm-roberta-base-ViT-B-32), built offline in the
session (scripts/train_multilingual_model.py), works as `--model local-dir:...`."""

from __future__ import annotations

import json
from pathlib import Path


from scripts.synthetic import CONCEPTS
from scripts.train_multilingual_model import phrases
from tests.conftest import run_xmr


def test_queries_in_five_languages_find_the_same_pictures(tmp_path, multilingual_model, samples):
    from retrieval import Library

    folder, manifest = samples
    lib = Library(tmp_path / "lib", model=multilingual_model, create=True)
    assert lib.index([folder]).skipped == 0
    enc = lib.encoder
    assert type(enc.tokenizer).__name__ == "HFTokenizer" and enc.context_length == 24
    pieces = enc.tokenizer.tokenizer.tokenize("赤い円 ein roter Kreis")
    assert "▁赤い円" in pieces and "<unk>" not in pieces, pieces
    assert enc.count_tokens("赤い円") == 3  # <s> piece </s>: chunking counts this tokenizer's tokens
    for lang in ("en", "fr", "de", "es", "ja"):
        right = 0
        for c in CONCEPTS:
            hit = lib.search(phrases(c.color, c.shape)[lang][0], k=1, type="image", mode="semantic")[0]
            right += manifest[str(Path(hit.path).relative_to(folder))] == f"{c.color} {c.shape}"
        assert right / len(CONCEPTS) >= 0.9, (lang, right)
    # The same thing said in two languages is nearly the same vector.
    fr, ja = enc.encode_text(["un cercle rouge", "赤い円"])
    assert float(fr @ ja) > 0.9
    lib.close()


def test_the_cli_takes_a_multilingual_model_and_records_its_tokenizer(tmp_path, multilingual_model, samples):
    import shutil

    folder, manifest = samples
    model = tmp_path / "model"
    shutil.copytree(multilingual_model[len("local-dir:"):], model)
    lib = tmp_path / "lib"
    r = run_xmr("--library", str(lib), "index", str(folder / "photos"), "--model", f"local-dir:{model}")
    assert r.returncode == 0, r.stderr
    r = run_xmr("--library", str(lib), "search", "una estrella amarilla", "--type", "image", "-k", "2", "--json", "--no-server")
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)
    assert manifest[str(Path(hits[0]["path"]).relative_to(folder))] == "yellow star"
    # The tokenizer is part of what made the vectors: a changed one is refused, not mixed in.
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["model_max_length"] = 23
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    r = run_xmr("--library", str(lib), "search", "un cercle rouge", "--no-server")
    assert r.returncode != 0 and "changed since this library was built" in r.stderr, r.stderr
