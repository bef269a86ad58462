"""One search request (retrieval.request) from the box to the index: each filter through the CLI's
flag, the query language, the HTTP API and the Python client gives the same hits; the query
language on good and malformed queries (hypothesis); the ranking rules of hybrid search on the
demo world and on a second, independently made model; tags and the cutoff on both."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval import Library
from retrieval.errors import UsageError
from retrieval.querylang import parse
from retrieval.request import SearchRequest, specs
from scripts.synthetic import COLORS, CONCEPTS
from tests.conftest import live_server, run_xmr

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# (request field, value, the same typed in a query): each filter of the declaration
FILTERS = [
    ("type", "text", "type:text"),
    ("after", "2021-01-01", "after:2021-01-01"),
    ("before", "2021-06-01", "before:2021-06-01"),
    ("path", "photos/2020", "path:photos/2020"),
    ("camera", "canon", "camera:canon"),
    ("near", "48.86,2.35,10", "place:48.86,2.35,10"),
    ("min_size", "3KB", "size:>3KB"),
    ("max_size", "3KB", "size:<3KB"),
    ("tag", "blue", "tag:blue"),
]


def _flag(name: str) -> str:
    return next(spec.short or spec.cli_flag(f.name) for f, spec in specs() if f.name == name)


def _wire(name: str) -> str:
    return next(spec.api_name(f.name) for f, spec in specs() if f.name == name)


@pytest.fixture(scope="module")
def world(tmp_path_factory, trained_model):
    from scripts.photo_world import make_world

    media = tmp_path_factory.mktemp("request-media")
    manifest = make_world(media, seed=3, concepts=12, notes=True)
    lib = Library(tmp_path_factory.mktemp("request-lib"), model=trained_model, create=True)
    lib.index([media])
    lib.tag(["|".join(COLORS)], prompt="a {}")
    return lib, media, manifest


def test_every_filter_reads_the_same_from_the_cli_the_query_the_api_and_the_client(world):
    lib, media, _ = world
    query = "a blue square"
    with live_server(lib.path) as (_, info):
        for name, value, typed in FILTERS:
            want = [h.item_id for h in lib.search(query, k=20, **{name: value})]
            assert want, name  # the case selects something
            typed_in = [h.item_id for h in lib.search(f"{query} {typed}", k=20)]
            url = info["url"] + "/api/search?" + urllib.parse.urlencode({"q": query, "k": 20, _wire(name): value})
            with urllib.request.urlopen(url, timeout=60) as r:
                api = [h["item_id"] for h in json.load(r)["hits"]]
            flag = run_xmr("--library", str(lib.path), "search", query, "-k", "20", _flag(name), value, "--json",
                           check=True)  # through the running server: the Python client's request
            got = {"typed": typed_in, "api": api, "client": [h["item_id"] for h in json.loads(flag.stdout)]}
            assert all(v == want for v in got.values()), (name, want, got, lib.search(query, k=20, **{name: value}))
    # and the CLI in-process, all filters of a kind together, the flags and the typed query alike
    flags = run_xmr("--library", str(lib.path), "search", query, "--after", "2020", "--camera", "canon|nikon",
                    "--type", "image", "--json", "--no-server", check=True)
    typed = run_xmr("--library", str(lib.path), "search", f"{query} after:2020 camera:canon OR camera:nikon type:image",
                    "--json", "--no-server", check=True)
    assert json.loads(flags.stdout) == json.loads(typed.stdout) and json.loads(flags.stdout)


def test_a_malformed_token_is_a_usage_error_naming_it(world):
    lib, _, _ = world
    for bad in ("after:yesterday", "type:photo", "size:2MB", "place:1,2", "tag:red OR type:image", "-tag:red"):
        proc = run_xmr("--library", str(lib.path), "search", f"a red circle {bad}", "--no-server")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (bad, proc.stderr)
        assert bad.split()[0].lstrip("-") in proc.stderr, (bad, proc.stderr)
    clash = run_xmr("--library", str(lib.path), "search", "a red circle after:2020", "--after", "2021", "--no-server")
    assert clash.returncode == 2 and "after given twice" in clash.stderr


def test_the_api_schema_comes_from_the_declaration(world):
    from tests.test_server_api import make_client

    lib, _, _ = world
    client, _ = make_client(lib.path)
    schema = client.get("/openapi.json").json()
    declared = {spec.api_name(f.name): spec for f, spec in specs() if spec.api}
    for path, method in (("/api/search", "get"),):
        params = {p["name"]: p for p in schema["paths"][path][method]["parameters"]}
        assert set(params) == set(declared)
        for name, spec in declared.items():
            assert params[name].get("description") == spec.help, name
    body = schema["components"]["schemas"]["SearchParams"]["properties"]
    assert set(body) == set(declared)
    # one value where the API takes several (the JSON body's "type": "image") is taken too
    one = client.post("/api/search", json={"q": "a red circle", "type": "image", "k": 3}).json()
    assert len(one["hits"]) == 3 and {h["modality"] for h in one["hits"]} == {"image"}
    typed = client.get("/api/search", params={"q": "a red circle type:image after:2020", "k": 3}).json()
    assert [t["key"] for t in typed["tokens"]] == ["type", "after"] and typed["filters"]["after"].startswith("2020")


# -- the query language ----------------------------------------------------------------------

WORDS = st.lists(st.sampled_from(["a", "red", "circle", "beach", "at", "night", "E-4471", "café"]), max_size=4)
VALUES = {
    "after": st.sampled_from(["2020", "2021-05", "2022-01-31"]),
    "type": st.lists(st.sampled_from(["image", "text", "audio", "video", "document"]), min_size=1, max_size=2, unique=True),
    "tag": st.lists(st.sampled_from(["red", "blue", "sea side"]), min_size=1, max_size=2, unique=True),
    "camera": st.sampled_from(["canon", "Pixel 7"]),
    "size": st.sampled_from([">2MB", "<500KB", "1MB..5MB"]),
}


def _quoted(value: str) -> str:
    return f'"{value}"' if " " in value else value


@given(words=WORDS, chosen=st.fixed_dictionaries({}, optional=VALUES), excluded=st.lists(st.sampled_from(["dog", "a crowd"]), max_size=2, unique=True))
@SETTINGS
def test_typed_filters_parse_to_what_they_say(words, chosen, excluded):
    parts = list(words)
    for key, value in chosen.items():
        if isinstance(value, list):
            parts.append(" OR ".join(f"{key}:{_quoted(v)}" for v in value))
        else:
            parts.append(f"{key}:{_quoted(value)}")
    parts += [f'-"{w}"' if " " in w else f"-{w}" for w in excluded]
    p = parse(" ".join(parts))
    assert p.texts == ([" ".join(words)] if words else [] if parts else [""])  # a blank text stays: "empty text"
    assert p.exclude == excluded and p.negatives == excluded
    if "after" in chosen:
        assert p.fields["after"] == chosen["after"]
    if "type" in chosen:
        assert p.fields["type"] == tuple(chosen["type"])
    if "tag" in chosen:
        assert p.fields["tag"] == ("|".join(chosen["tag"]),)
    if "camera" in chosen:
        assert p.fields["camera"] == chosen["camera"]
    if "size" in chosen:
        assert set(p.fields) & {"min_size", "max_size"}
    assert [t.key for t in p.tokens] == list(chosen) + ["not"] * len(excluded)


@given(text=st.text(max_size=60))
@SETTINGS
def test_any_text_parses_or_is_a_usage_error(text):
    try:
        SearchRequest(q=(text,)).resolve()
    except UsageError as e:
        assert str(e)


@given(key=st.sampled_from(["after", "before", "type", "place", "size"]), value=st.text(min_size=1, max_size=12))
@SETTINGS
def test_a_bad_value_names_its_token(key, value):
    token = f"{key}:{_quoted(value)}"
    try:
        parse(f"a red circle {token}")
    except UsageError as e:
        assert key in str(e)


# -- ranking: hybrid never hurts meaning, on two models ----------------------------------------


def _words_world(folder: Path) -> dict[str, str]:
    """Two pictures of each concept and, for every concept, a note in the words of its query
    about something else that shares ONE word with it ("a green triangle" beside "a green
    square"); one note with a code. The concept of each file, by name."""
    import random

    from scripts.synthetic import SHAPES, draw

    rng = random.Random(7)
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for n, c in enumerate(CONCEPTS):
        for i in range(2):
            name = f"p{n:02d}-{i}.png"
            draw(c, rng, size=96).save(folder / name)
            truth[name] = f"{c.color} {c.shape}"
        shape = SHAPES[(SHAPES.index(c.shape) + 1) % len(SHAPES)]
        (folder / f"n{n:02d}.txt").write_text(f"a photo of a {c.color} {shape}")
        truth[f"n{n:02d}.txt"] = f"{c.color} {shape}"
    (folder / "permit.txt").write_text("Parking permit ZK-4471")
    return truth


@pytest.mark.parametrize("which", ["trained_model", "multilingual_model"])
def test_hybrid_puts_meaning_first_and_exact_words_on_top(tmp_path, request, which):
    model = request.getfixturevalue(which)
    truth = _words_world(tmp_path / "media")
    lib = Library(tmp_path / "lib", model=model, create=True)
    lib.index([tmp_path / "media"])
    first_right = 0
    for c in CONCEPTS:
        hits = lib.search(f"a {c.color} {c.shape}", k=10)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)  # one score, the list's order
        top = hits[0]
        # a note sharing one word with the query (another concept's) never comes first
        assert not (top.modality == "text" and truth.get(Path(top.path).name) != f"{c.color} {c.shape}"), top
        first_right += truth.get(Path(top.path).name) == f"{c.color} {c.shape}"
    assert first_right >= 0.9 * len(CONCEPTS), first_right
    # a code is an exact word: what holds it comes first, whatever the meaning says
    assert Path(lib.search("ZK-4471", k=3)[0].path).name == "permit.txt"
    assert Path(lib.search("a blue star ZK-4471", k=3)[0].path).name == "permit.txt"
    # -word: nothing whose words hold it
    assert all("permit" not in h.path for h in lib.search("a red circle -parking", k=50))


@pytest.mark.parametrize("which", ["trained_model", "multilingual_model"])
def test_colour_tags_compete_and_hold_on_two_models(tmp_path, request, which):
    from scripts.photo_world import make_world

    model = request.getfixturevalue(which)
    media = tmp_path / "media"
    manifest = make_world(media, seed=4, concepts=24, copies=False)
    lib = Library(tmp_path / "lib", model=model, create=True)
    lib.index([media])
    lib.tag(["|".join(COLORS)], prompt="a {}")
    tp = found = relevant = 0
    for colour in COLORS:
        got = {str(Path(r["path"]).relative_to(media)) for r in lib.tags(colour)}
        want = {rel for rel, p in manifest["pictures"].items() if p["concept"].startswith(colour + " ")}
        tp, found, relevant = tp + len(got & want), found + len(got), relevant + len(want)
    assert tp / found >= 0.9 and tp / relevant >= 0.8, (tp, found, relevant)
    # and `--cutoff auto` on colour + shape concepts
    tp = found = relevant = 0
    for concept in {p["concept"] for p in manifest["pictures"].values()}:
        got = {str(Path(h.path).relative_to(media)) for h in lib.search(f"a {concept}", k=2000, cutoff="auto", mode="semantic")}
        want = {rel for rel, p in manifest["pictures"].items() if p["concept"] == concept}
        tp, found, relevant = tp + len(got & want), found + len(got), relevant + len(want)
    assert tp / found >= 0.8 and tp / relevant >= 0.8, (tp, found, relevant)
