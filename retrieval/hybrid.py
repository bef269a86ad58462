"""Words beside meaning: how a word search and a vector search make one ranking.

Modes (`xmr search --mode`):
- `semantic`: nearest vectors only;
- `words`: the full-text index only (BM25 on SQLite, ts_rank_cd on PostgreSQL), loading no
  model: items holding every word of the query first, then those holding some of them;
- `hybrid` (default): meaning first. Every candidate (the nearest vectors, and the items whose
  words hold the query's words) is scored by how far its cosine stands above the query's usual
  cosine in its kind (retrieval.calibration: standard deviations, comparable across kinds); an
  item whose words hold EVERY word of the query is lifted by LIFT_COMMON standard deviations plus
  up to LIFT_RARE more the rarer the query's commonest word is in the library (inverse document
  frequency: a name or a rare term lifts more than "green"), and above every item that does not
  (first, whatever the meaning says) when the query names something only exact words find: a
  code (E-7634), a number, a quoted phrase. An item holding only SOME of the words is lifted
  by SOME_WORDS of that, but never to what the query means (the items that stand out by meaning,
  as `--cutoff auto` finds them): where the meaning finds something, such an item stays below
  it; where it finds nothing (a name the model does not know), a transcript that misheard one
  word of the query is found by the words it got right.

Why not Reciprocal Rank Fusion (what xmr did before, as Elasticsearch and Vespa offer): RRF adds
1/(60 + rank) per list and ignores how far apart the scores are, so a note that shares one word
with "a green square" and sits fourth by meaning outranked the green square's picture, first by
meaning with a wide margin. Scores that keep their distances (as Weaviate's relative score fusion
does), on a scale that holds across kinds and models (the calibration), with words as a bounded
lift, keep the order meaning gives unless words are the point of the query. Measured on labelled
sets: `python -m scripts.eval_words` (README: "Words and meaning").

A "quoted phrase" must occur in every hit, in any mode but `semantic`: the list keeps only items
whose words hold it. `-word` and `-"phrase"` (retrieval.querylang) remove the items holding them.
"""

from __future__ import annotations

MODES = ("hybrid", "semantic", "words")
DEFAULT_MODE = "hybrid"
DEPTH = 50  # each side's candidates, at least k
LIFT_COMMON = 1.0  # standard deviations for holding every word of the query (scripts/eval_words.py)
LIFT_RARE = 3.0  # ... and up to this much more the rarer its words are in the library (names, rare terms)
SOME_WORDS = 0.5  # an item holding only some of the words: this share of that lift, and never to what is meant
BELOW_MEANT = 0.01  # how far below the least of what the query means such an item stays


def depth(k: int) -> int:
    """How many candidates each side contributes for k results."""
    return max(k, DEPTH)
