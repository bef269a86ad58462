"""SIGKILL at random moments (a watcher's runs among them), 50 times, then SIGINT: `xmr check` passes after every one, and the
library ends equal to an uninterrupted build (scripts/crash_test.py at a CI size), with the
library's own SQLite catalog and with a PostgreSQL one. The SQLite library also holds a second
model's vectors, which every run brings in step (kills land there too; they must end equal to a
library built with that model alone)."""

from __future__ import annotations


from tests.conftest import need_faces, run_json_script


def test_kills_lose_nothing(tmp_path, catalog_db):
    """32 kills at CI size (the script runs as many as asked: `--kills 200` by hand)."""
    db = ["--db", catalog_db] if catalog_db else []
    # Two models do twice the encoding per run: fewer files keep the test's length.
    size = ["--images", "160", "--texts", "40"] if catalog_db else ["--images", "80", "--texts", "20", "--added-model"]
    proc, res = run_json_script("crash_test.py", "--kills", "32", *size,
                                "--seed", "1", "--work", str(tmp_path / "work"), *db, timeout=1200)
    assert res["catalog"] == ("postgresql" if catalog_db else "sqlite")
    assert res["checks_failed"] == [], res["checks_failed"]
    assert res["kills"] >= 32 and res["kills_targeted"] >= 4  # some aimed between file write and commit
    # `xmr index --watch` killed while it indexed changes made under it (and some of its runs got through)
    assert res["watched_kills"] >= 4 and res["watched_runs_seen"] >= 1
    assert res["uncommitted_files_seen"] >= 1  # a kill did land between an index write and its commit
    assert res["sigints"] >= 1 and res["sigint_clean"] == res["sigints"]
    assert res["checks_passed"] == res["kills"] + res["sigints"] + res["completed_runs"]
    assert res["changes"]["deleted"] and res["changes"]["renamed"] and res["changes"]["edited"]
    assert res["final_run_exit"] == 0 and res["final_check"] == "ok"
    assert res["same_items"] and res["vectors_equal"], res
    # Real photos of real people were among the files: their faces and people end as an
    # uninterrupted build's, and the faces' index holds exactly the catalog's faces.
    if isinstance(res["faces"], str):
        need_faces(res["faces"])
    assert res["faces_equal"] and res["faces"]["count"] >= 2 and res["faces"]["index_in_step"], res["faces"]
    if not catalog_db:
        assert res["added_model"]["same_items"] and res["added_model"]["max_vector_diff"] <= 1e-4, res["added_model"]
    assert res["ok"] and proc.returncode == 0
