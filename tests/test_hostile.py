"""A folder of hostile files (scripts/hostile_corpus.py): each one skipped with its reason or
indexed as what it is, the good files indexed, exit 0, no traceback, memory bounded."""

from __future__ import annotations


from scripts.hostile_corpus import EXPECTED
from tests.conftest import run_json_script


def test_hostile_files_are_skipped_or_indexed_and_memory_stays_bounded(tmp_path):
    proc, res = run_json_script("hostile_corpus.py", "--work", str(tmp_path / "work"), timeout=900)
    assert res["file_modes_obeyed"]  # the mode-000 file really was unreadable to the run, even as root
    assert res["wrong"] == [], {n: res["files"][n] for n in res["wrong"]}
    assert set(res["files"]) == set(EXPECTED)
    indexed = sum(1 for want in EXPECTED.values() if want[0] == "indexed")
    assert f"{indexed} new" in res["summary"] and f"{len(EXPECTED) - indexed} skipped" in res["summary"]
    assert res["exit"] == 0 and not res["traceback"] and res["check"] == "ok"
    # the bomb decoded would need 900 MB, the sparse file read whole 1 GiB: neither happened
    assert res["peak_rss_mib"] <= res["clean_peak_rss_mib"] + 256, res
    assert res["ok"] and proc.returncode == 0
