"""The rows of a search's hits are fetched in one query by id (retrieval.hits.load_rows); at
10M items its plan must look rows up by primary key on both catalogs, never scan a table (a
scan is what turns clip-retrieval's 0.3 s metadata fetches into 20 s at scale)."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select

from indexer.catalog import File, Item
from indexer.store import Store
from retrieval.hits import load_rows

ROWS = 20_000  # enough that PostgreSQL's planner prefers its indexes to a scan, as at scale


@pytest.fixture
def catalog(tmp_path, catalog_db) -> Store:
    store = Store(tmp_path / "lib", db=catalog_db, create=True)
    with store.engine.begin() as conn:
        for start in range(0, ROWS, 5000):
            ids = range(start + 1, start + 5001)
            conn.execute(insert(File), [{"id": i, "path": f"/p/{i}.jpg", "modality": "image", "size": 1,
                                        "mtime_ns": i, "phash": f"{i:016x}"} for i in ids])
            conn.execute(insert(Item), [{"id": i, "file_id": i, "modality": "image", "chunk": 0, "embedder": "image"}
                                        for i in ids])
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return store


def _plan(store: Store, ids: list[int]) -> str:
    """The database's own plan of the statement load_rows runs for these ids."""
    stmt = select(Item, File).join(File).where(Item.id.in_(ids))
    sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if store.engine.dialect.name == "sqlite" else "EXPLAIN "
    with store.engine.connect() as conn:
        return "\n".join(" ".join(str(c) for c in row) for row in conn.exec_driver_sql(explain + sql))


def test_hit_rows_are_fetched_by_primary_key_on_both_catalogs(catalog):
    ids = [17, 4_242, 19_999, 12, 8_000, 3, 15_000, 77, 10_001, 2_500]  # a search's ten hits
    with catalog.Session() as s:
        rows = load_rows(s, ids)
    assert sorted(rows) == sorted(ids) and all(f.id == item.file_id for item, f in rows.values())
    plan = _plan(catalog, ids)
    if catalog.engine.dialect.name == "sqlite":
        # "SEARCH items USING INTEGER PRIMARY KEY (rowid=?)"; a bare "SCAN items" would read them all
        assert "SEARCH items USING INTEGER PRIMARY KEY" in plan and "SEARCH files USING INTEGER PRIMARY KEY" in plan, plan
        assert "SCAN items" not in plan and "SCAN files" not in plan, plan
    else:
        assert "items_pkey" in plan and "files_pkey" in plan, plan
        assert "Seq Scan" not in plan, plan
