"""Property tests (hypothesis) for everything that turns user input into a query: the Query rules,
`xmr search`'s flags in-process and through a running server, and the HTTP API's parameters.
Whatever is typed: an answer or a usage error (exit 2, "Error: ..."), never a traceback or a 500."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval.cli import cli
from retrieval.errors import UsageError
from retrieval.query import MAX_QUERY_CHARS, Query
from tests.conftest import index_pictures_and_note, live_server

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# What a person (or a script) might type: words, blanks, control and odd Unicode characters,
# very long texts around the limit, and bytes that are not UTF-8 (argv keeps them as surrogates).
TEXTS = st.one_of(
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(["", " ", "\t\n", "a red circle", "-k", "--type", "caf\udce9", "\u200b", "ä" * 77]),
    st.integers(MAX_QUERY_CHARS - 2, MAX_QUERY_CHARS + 2).map(lambda n: "x" * n),
)
WEIGHTS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1), st.none())


@given(texts=st.lists(TEXTS, max_size=3), negatives=st.lists(TEXTS, max_size=2), weight=WEIGHTS,
       not_weight=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1)),
       n_images=st.integers(0, 1))
@SETTINGS
def test_query_rules(tmp_path_factory, texts, negatives, weight, not_weight, n_images):
    """validate() accepts exactly the queries its rules allow, and refuses the rest with UsageError."""
    image = str(Path(__file__))  # any existing file: validate checks presence, embed checks content
    q = Query(texts=texts, negatives=negatives, images=[image] * n_images, media_weight=weight, negative_weight=not_weight)
    allowed = (
        all(t.strip() for t in texts + negatives)
        and bool(texts or n_images)
        and all(len(t) <= MAX_QUERY_CHARS for t in texts + negatives)
        and (weight is None or (0 <= weight <= 1 and bool(texts) and n_images > 0))
        and 0 <= not_weight <= 1
    )
    try:
        q.validate()
    except UsageError as e:
        assert not allowed, f"refused a good query: {e}"
        assert str(e)
    else:
        assert allowed, "accepted a bad query"


@pytest.fixture(scope="module")
def small_library(tmp_path_factory, random_model):
    base = tmp_path_factory.mktemp("props")
    lib, media = index_pictures_and_note(base, random_model, pictures=6, note="a red circle on a white background")
    files = {"picture": str(media / "0.png"), "note": str(media / "note.txt"), "missing": str(base / "nope.png"),
             "folder": str(media)}
    return lib.path, files


def argv_strategy(files: dict[str, str]):
    k = st.one_of(st.integers(-3, 12), st.integers(-10**30, 10**30), st.sampled_from(["abc", "", "1e3", "0x10", " 3"]))
    kind = st.sampled_from(["any", "image", "text", "audio", "IMAGE", "bogus", ""])
    weight = st.one_of(WEIGHTS.map(str), st.sampled_from(["x", ""]))
    path = st.sampled_from(sorted(files.values()))
    anything = st.one_of(
        st.tuples(st.just("-k"), k.map(str)), st.tuples(st.just("--type"), kind), st.tuples(st.just("--weight"), weight),
        st.tuples(st.just("--not"), TEXTS), st.tuples(st.just("--text"), TEXTS), st.tuples(st.just("--image"), path),
        st.tuples(st.just("--audio"), path), st.tuples(st.just("--not-weight"), weight), st.just(("--json",)),
        st.just(("--bogus",)),
    )
    sensible = st.one_of(  # half the options make sense, so that many command lines get as far as a search
        st.tuples(st.just("-k"), st.integers(1, 12).map(str)), st.tuples(st.just("--type"), st.sampled_from(["any", "image", "text"])),
        st.tuples(st.just("--image"), st.just(files["picture"])), st.just(("--json",)),
        st.tuples(st.just("--not"), st.sampled_from(["a blue square", "night"])),
    )
    words = st.sampled_from(["a red circle", "green star", "notes"])
    return st.tuples(st.one_of(st.none(), TEXTS, words), st.lists(st.one_of(sensible, anything), max_size=4))


def _check_answer(result, argv: list[str]) -> None:
    where = f"xmr {' '.join(map(repr, argv))}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{where} raised {result.exception!r}") from result.exception
    assert result.exit_code in (0, 2), f"{where} exited {result.exit_code}: {result.output[-500:]}"
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert "Error: " in result.output, result.output
    elif "--json" in argv:
        hits = json.loads(result.stdout)
        k = int(argv[argv.index("-k") + 1]) if "-k" in argv else 10
        assert len(hits) <= k and all(math.isfinite(h["score"]) for h in hits)


def _search(library: Path, files: dict[str, str], runner: CliRunner, data) -> None:
    query, options = data.draw(argv_strategy(files))
    argv = ["--library", str(library), "search", *([query] if query is not None else []), *[x for o in options for x in o]]
    _check_answer(runner.invoke(cli, argv, catch_exceptions=True), argv)


@pytest.fixture(scope="module")
def cached_encoder(small_library):
    """The model loads once for the module instead of once per generated command line."""
    import functools

    import indexer.models

    mp = pytest.MonkeyPatch()
    mp.setattr(indexer.models, "load_encoder", functools.lru_cache(maxsize=2)(indexer.models.load_encoder))
    yield
    mp.undo()


@given(data=st.data())
@settings(SETTINGS, max_examples=80)
def test_search_flags_in_process(small_library, cached_encoder, data):
    library, files = small_library
    _search(library, files, CliRunner(), data)


@pytest.fixture(scope="module")
def served(small_library):
    with live_server(small_library[0]) as (_, info):
        yield info


@given(data=st.data())
@settings(SETTINGS, max_examples=60)
def test_search_flags_through_the_server(small_library, cached_encoder, served, data):
    """The same command lines answered by `xmr serve` (found through its discovery file)."""
    library, files = small_library
    _search(library, files, CliRunner(), data)


@pytest.fixture(scope="module")
def api(small_library):
    from tests.test_server_api import make_client

    client, _ = make_client(small_library[0])
    return client


PARAM = st.one_of(st.text(max_size=12), st.integers(-10**20, 10**20).map(str), st.sampled_from(["", "nan", "1e999", "-0"]))


@given(params=st.lists(st.tuples(st.sampled_from(["q", "not", "k", "type", "weight", "not_weight", "offset", "like", "zzz"]),
                                 st.one_of(PARAM, TEXTS.filter(lambda t: "\udce9" not in t))), max_size=6))
@settings(SETTINGS, max_examples=150)
def test_http_search_parameters(api, params):
    """Any query string: 200 with at most k hits, or a 4xx with a message; never a 500."""
    r = api.get("/api/search", params=params)
    assert r.status_code in (200, 400, 404, 422), (params, r.status_code, r.text[:300])
    body = r.json()
    if r.status_code == 200:
        k = int(dict(params).get("k", 10))
        assert len(body["hits"]) <= k
    else:
        assert body["detail"]
