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
