"""`precis sql`: DuckDB over the Delta tables, each registered as a view named `layer.name`.

DuckDB reads Delta through its `delta` extension, loaded from the PyPI package
`duckdb-extension-delta` (no download at run time, so it works offline).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from jobs.lake.lake import Lake
from jobs.lake.tables import TABLES
from precis.errors import MissingPrerequisite


def delta_extension_path() -> Path:
    import duckdb_extension_delta

    base = Path(duckdb_extension_delta.__file__).parent / "extensions"
    matches = sorted(base.glob(f"v{duckdb.__version__}/delta.duckdb_extension")) or sorted(
        base.glob("*/delta.duckdb_extension")
    )
    if not matches:
        raise MissingPrerequisite(
            f"no delta.duckdb_extension under {base}", f"reinstall duckdb-extension-delta=={duckdb.__version__}"
        )
    return matches[0]


def connect(lake: Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with every registered table as a view `layer.name`: the Delta table
    where it exists, else an empty table of its schema (so a query written for a table that no
    job has filled yet runs and returns nothing, instead of failing)."""
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{delta_extension_path()}'")
    existing = {s.qualified_name for s in lake.existing_tables()}
    for spec in TABLES.values():
        if spec.layer == "test" and spec.qualified_name not in existing:
            continue
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{spec.layer}"')
        view = f'"{spec.layer}"."{spec.name}"'
        if spec.qualified_name in existing:
            path = lake.path(spec).replace("'", "''")
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM delta_scan('{path}')")
        else:
            empty = spec.schema.empty_table()
            con.register(f"__empty_{spec.layer}_{spec.name}", empty)
            con.execute(f'CREATE VIEW {view} AS SELECT * FROM "__empty_{spec.layer}_{spec.name}"')
    return con


def run_sql(lake: Lake, query: str):
    """The query's result as a pandas DataFrame."""
    con = connect(lake)
    try:
        return con.execute(query).fetchdf()
    finally:
        con.close()
