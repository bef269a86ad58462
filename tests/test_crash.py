"""SIGKILL at random moments, 50 times, then SIGINT: `xmr check` passes after every one, and the
library ends equal to an uninterrupted build (scripts/crash_test.py at a CI size), with the
library's own SQLite catalog and with a PostgreSQL one."""

from __future__ import annotations


from tests.conftest import run_json_script


def test_fifty_kills_lose_nothing(tmp_path, catalog_db):
    db = ["--db", catalog_db] if catalog_db else []
    proc, res = run_json_script("crash_test.py", "--kills", "50", "--images", "160", "--texts", "40",
                                "--seed", "1", "--work", str(tmp_path / "work"), *db, timeout=1200)
    assert res["catalog"] == ("postgresql" if catalog_db else "sqlite")
    assert res["checks_failed"] == [], res["checks_failed"]
    assert res["kills"] >= 50 and res["kills_targeted"] >= 5  # some aimed between file write and commit
    assert res["uncommitted_files_seen"] >= 1  # a kill did land between an index write and its commit
    assert res["sigints"] >= 1 and res["sigint_clean"] == res["sigints"]
    assert res["checks_passed"] == res["kills"] + res["sigints"] + res["completed_runs"]
    assert res["changes"]["deleted"] and res["changes"]["renamed"] and res["changes"]["edited"]
    assert res["final_run_exit"] == 0 and res["final_check"] == "ok"
    assert res["same_items"] and res["vectors_equal"], res
    assert res["ok"] and proc.returncode == 0
