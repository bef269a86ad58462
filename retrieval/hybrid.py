"""Words beside meaning: how a word search and a vector search are fused into one ranking.

Modes (`xmr search --mode`):
- `semantic`: nearest vectors only (what xmr did before it had a full-text index);
- `words`: the full-text index only (BM25 on SQLite, ts_rank_cd on PostgreSQL), loading no
  model: items holding every word of the query first, then those holding some of them;
- `hybrid` (default): weighted Reciprocal Rank Fusion (Cormack, Clarke & Buettcher, SIGIR 2009;
  what Elasticsearch, OpenSearch and Vespa use for hybrid search) of the items holding every
  word of the query (weight 1) and the nearest vectors (weight 1); when no item holds every
  word, the items holding some of them take the first list's place at weight SOME_WEIGHT. An
  item's fused score is the sum over the lists that hold it of weight / (RRF_K + rank), rank
  from 1; ties go to the words' finds.

Why split the words side: a passage holding some of a long query's words but not its subject is
what words get wrong. On our labelled set (scripts/eval_words.py), where a note in a paraphrase
query's own filler words is about another shape, plain RRF over any-word matches lost 11 %
recall@3 on paraphrases against meaning alone. Requiring every word alone fixed that but lost
the recordings whose transcript misheard one word of the query (tests/test_words.py). Every
word at full weight, and, only where nothing holds every word, some words at a quarter weight
keeps both: rare words in the top 3, no loss on paraphrases (at 1/2 and 1/3 weight a few
distractors still got in), and a transcript found by the words it got right.

A "quoted phrase" must occur in every hit, in any mode but `semantic`: the fused list keeps only
items whose words hold it.
"""

from __future__ import annotations

from typing import Hashable, Sequence, TypeVar

MODES = ("hybrid", "semantic", "words")
DEFAULT_MODE = "hybrid"
RRF_K = 60  # the constant of the original paper, also Elasticsearch's default
DEPTH = 50  # each list's length before fusion, at least k
SOME_WEIGHT = 0.25  # items holding only some of the query's words (scripts/eval_words.py: 0.5 and 0.33 still lost paraphrases)

K = TypeVar("K", bound=Hashable)


def depth(k: int) -> int:
    """How many candidates each side contributes for k fused results."""
    return max(k, DEPTH)


def rrf(lists: Sequence[tuple[Sequence[K], float]], k: int = RRF_K) -> list[tuple[K, float]]:
    """Weighted Reciprocal Rank Fusion of ranked lists of keys (best first), each with its
    weight: (key, fused score), best first; ties go to the order met (earlier lists first)."""
    scores: dict[K, float] = {}
    for ranked, weight in lists:
        for rank, key in enumerate(ranked, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    order = {key: i for i, key in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))
