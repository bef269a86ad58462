"""Broken files are skipped with a reason, the rest is indexed, and the run exits 0."""

from __future__ import annotations

import json
import os
import random

import pytest

from scripts.hostile_corpus import add_link_traps_and_odd_names
from scripts.synthetic import CONCEPTS, draw
from tests.conftest import run_xmr


def _world_readable(path):
    for dirpath, _dirs, filenames in os.walk(path):
        os.chmod(dirpath, 0o777)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o644)


@pytest.fixture
def bad_folder(tmp_path, random_model):
    base = tmp_path / "world"
    media = base / "media"
    media.mkdir(parents=True)
    rng = random.Random(0)
    draw(CONCEPTS[0], rng).save(media / "good.png")
    (media / "good.txt").write_text("a yellow star", encoding="utf-8")
    draw(CONCEPTS[1], rng, size=120).save(media / "whole.jpg", quality=90)
    data = (media / "whole.jpg").read_bytes()
    (media / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (media / "whole.jpg").unlink()
    (media / "zero.png").write_bytes(b"")
    (media / "zero.txt").write_bytes(b"")
    (media / "text.jpg").write_text("I am not a picture", encoding="utf-8")
    (media / "binary.txt").write_bytes(bytes(range(256)) * 20)
    (media / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (media / "locked.txt").write_text("secret", encoding="utf-8")
    add_link_traps_and_odd_names(media, "a star with a newline in its name")
    _world_readable(base)
    os.chmod(media / "locked.txt", 0)
    return media


def test_bad_files_are_skipped_with_reasons(tmp_path, bad_folder, random_model):
    lib = tmp_path / "lib"
    proc = run_xmr("--library", str(lib), "index", str(bad_folder), "--model", random_model, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    expected = [
        ("truncated.jpg", "broken image"),
        ("zero.png", "not an image"),
        ("zero.txt", "no text"),
        ("text.jpg", "not an image"),
        ("binary.txt", "binary file"),
        ("latin1.txt", "not UTF-8"),
        ("self-a.txt", "symbolic links"),
        ("dangling.png", "broken symlink"),
    ]
    if os.geteuid() != 0:  # root reads anything; see test_unreadable_file for that case
        expected.append(("locked.txt", "permission denied"))
    for name, reason in expected:
        prefix = f"skipping {bad_folder / name}: "
        line = next((x for x in proc.stderr.splitlines() if x.startswith(prefix)), None)
        assert line is not None, (name, proc.stderr)
        assert reason.lower() in line.lower(), line
    assert "skipping " + str(bad_folder) + "/bad\\xffname.txt: file name is not valid UTF-8" in proc.stderr
    assert f"{4 if os.geteuid() == 0 else 3} new" in proc.stdout

    hits = json.loads(run_xmr("--library", str(lib), "search", "star", "--json", check=True).stdout)
    names = sorted(os.path.basename(h["path"]) for h in hits)
    expected_names = ["good.png", "good.txt", "new\nline.txt"] + (["locked.txt"] if os.geteuid() == 0 else [])
    assert names == sorted(expected_names)
    human = run_xmr("--library", str(lib), "search", "star", check=True).stdout
    assert "new\\nline.txt" in human  # one hit, one line: the newline is shown escaped
    assert run_xmr("--library", str(lib), "check").returncode == 0


def test_unreadable_file(tmp_path, random_model, monkeypatch):
    """A file the user may not read is skipped. As root (who reads anything) the denial is simulated."""
    import builtins

    from retrieval import Library

    media = tmp_path / "m"
    media.mkdir()
    draw(CONCEPTS[0], random.Random(0)).save(media / "ok.png")
    locked = media / "locked.png"
    draw(CONCEPTS[1], random.Random(1)).save(locked)
    os.chmod(locked, 0)
    if os.geteuid() == 0:
        real_open = builtins.open

        def guarded_open(file, *a, **kw):
            if os.fspath(file) == str(locked):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *a, **kw)

        monkeypatch.setattr(builtins, "open", guarded_open)
    skipped = []
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    report = lib.index([media], on_skip=lambda p, r: skipped.append((p, r)))
    assert skipped == [(str(locked), "permission denied")]
    assert (report.new, report.skipped, report.skipped_paths) == (1, 1, [str(locked)])
