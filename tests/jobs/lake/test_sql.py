from jobs.ingest.job import ingest_relevance
from jobs.lake.sql import connect, delta_extension_path
from tests.conftest import CROWDFLOWER


def test_delta_extension_ships_with_the_package():
    assert delta_extension_path().name == "delta.duckdb_extension"


def test_every_existing_table_is_a_view_named_layer_name(lake):
    ingest_relevance(lake, [str(CROWDFLOWER)], "crowdflower", "2024-01-01")
    con = connect(lake)
    views = {tuple(r) for r in con.execute("select schema_name, view_name from duckdb_views() where not internal").fetchall()}
    assert {("bronze", "products"), ("bronze", "judgments")} <= views
    n, q = con.execute("select count(*), count(distinct query_id) from bronze.judgments").fetchone()
    assert (n, q) == (6269, 163)
    joined = con.execute(
        "select count(*) from bronze.judgments j join bronze.products p using (product_id)"
    ).fetchone()[0]
    assert joined == 6269


ESCAPES = [
    # (query, what stops it)
    ("COPY (SELECT 1) TO '{log}'", "read-only: COPY"),  # the query that once overwrote a _delta_log entry
    ("SELECT 1; COPY (SELECT 1) TO '/tmp/precis_escape.csv'", "read-only: COPY"),
    ("EXPORT DATABASE '/tmp/precis_escape'", "read-only: EXPORT"),
    ("CREATE TABLE x AS SELECT 1", "read-only: CREATE"),
    ("SET enable_external_access = true", "read-only: SET"),
    ("INSTALL httpfs", "read-only: LOAD"),
    ("LOAD '/tmp/evil.duckdb_extension'", "read-only: LOAD"),
    ("ATTACH '/tmp/precis_escape.db'", "read-only: ATTACH"),
    ("SELECT * FROM read_text('/etc/hostname')", "file system operations are disabled"),
    ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
]


def test_sql_reads_the_lake_and_nothing_else(lake):
    import duckdb
    import pytest

    from jobs.lake.sql import run_sql
    from precis.errors import QueryRefused

    ingest_relevance(lake, [str(CROWDFLOWER)], "crowdflower", "2024-01-01")
    log = f"{lake.path('bronze.products')}/_delta_log/00000000000000000000.json"
    before = open(log, "rb").read()
    refused = 0
    for query, why in ESCAPES:
        with pytest.raises((QueryRefused, duckdb.Error), match=why):
            run_sql(lake, query.format(log=log))
        refused += 1
    print(f"sql escapes tried {len(ESCAPES)}, refused {refused}")
    assert open(log, "rb").read() == before
    # reading the lake still works, including its files directly, and every SELECT-like form
    assert run_sql(lake, "SELECT count(*) AS n FROM bronze.judgments").n[0] == 6269
    assert len(run_sql(lake, "DESCRIBE bronze.products")) > 5
    assert len(run_sql(lake, f"SELECT * FROM read_text('{log}')")) == 1


def test_an_unreadable_table_fails_only_its_own_queries(lake, capsys):
    import duckdb
    import pytest

    from jobs.cli import main
    from jobs.lake.sql import run_sql

    ingest_relevance(lake, [str(CROWDFLOWER)], "crowdflower", "2024-01-01")
    log = lake.path("bronze.products") + "/_delta_log/00000000000000000000.json"
    with open(log, "w") as f:
        f.write("{not json")
    assert run_sql(lake, "SELECT count(*) AS n FROM bronze.judgments").n[0] == 6269
    with pytest.raises(duckdb.Error, match="table bronze.products cannot be read"):
        run_sql(lake, "SELECT * FROM bronze.products")
    # `precis tables` lists the readable ones and names the broken one, without a traceback
    assert main(["--lake", lake.root, "tables"]) == 1
    out = capsys.readouterr().out
    assert "bronze.judgments" in out and "6,269 rows" in out
    assert "bronze.products" in out and "unreadable" in out
