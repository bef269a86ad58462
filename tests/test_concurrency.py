"""Readers (server, CLI, a long-lived Library) loop while index runs add, edit, delete and rename
files: no errors, no hit for a deleted file after its run exited; a second writer is refused
(scripts/concurrency_test.py at a CI size, with a SQLite and a PostgreSQL catalog; its answer
times are figures, not asserted here)."""

from __future__ import annotations


from tests.conftest import run_json_script


def test_readers_never_fail_or_see_deleted_files_while_a_writer_runs(tmp_path, catalog_db):
    db = ["--db", catalog_db] if catalog_db else []
    _, res = run_json_script("concurrency_test.py", "--rounds", "2", "--images", "120", "--texts", "30",
                             "--seed", "2", "--work", str(tmp_path / "work"), *db, timeout=1200)
    assert res["catalog"] == ("postgresql" if catalog_db else "sqlite")
    assert res["errors"] == [], res["errors"][:5]
    assert res["stale"] == [], res["stale"][:5]
    for name in ("http", "cli", "library"):
        assert res["readers"][name]["n"] >= 10, res["readers"]
    assert res["readers"]["direct"]["n"] >= 1
    assert all(r["deleted"] and r["renamed"] and r["edited"] and r["added"] for r in res["rounds"])
    second = res["second_writer"]
    assert second["exit"] == 1 and second["first_still_running"], second
    assert "another xmr process" in second["message"] and "is writing" in second["message"]
    assert "Traceback" not in second["message"]
    assert res["check"] == "ok"
