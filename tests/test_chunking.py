"""Text is split with the encoder's own tokenizer into chunks that fit its context."""

from __future__ import annotations

import open_clip
import pytest

from indexer.kinds.text import chunk_text

WORDS = ("the quick brown fox jumps over a lazy dog while counting electroencephalography "
         "antidisestablishmentarianism and 12345 numbers; ").split()


@pytest.fixture(scope="module")
def tokenizer():
    return open_clip.get_tokenizer("ViT-B-32")


def _count(tok):
    return lambda text: len(tok.encode(text)) + 2


@pytest.mark.parametrize("context", [8, 20, 77])
def test_chunks_fit_and_cover_the_text(tokenizer, context):
    text = " ".join(WORDS[i % len(WORDS)] for i in range(700)) + ". The end!"
    chunks = chunk_text(text, _count(tokenizer), context)
    assert len(chunks) > 1
    for c in chunks:
        assert len(tokenizer.encode(c.text)) + 2 <= context
        assert text[c.char_start : c.char_end] == c.text
    # Every word lands in exactly one chunk, in order.
    assert " ".join(c.text for c in chunks).split() == text.split()
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # Chunks are not wastefully short: on average at least half the context.
    avg = sum(len(tokenizer.encode(c.text)) for c in chunks[:-1]) / max(1, len(chunks) - 1)
    assert avg >= (context - 2) / 2


def test_prefers_sentence_ends(tokenizer):
    text = " ".join(f"sentence number {i} is short." for i in range(40))
    chunks = chunk_text(text, _count(tokenizer), 40)
    assert all(c.text.endswith(".") for c in chunks)


def test_overlong_word_still_forms_a_chunk(tokenizer):
    text = "x" * 2000 + " tail"
    chunks = chunk_text(text, _count(tokenizer), 16)
    assert chunks[0].text == "x" * 2000
    assert chunks[-1].text.endswith("tail")
