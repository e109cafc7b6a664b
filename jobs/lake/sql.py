"""`precis sql`: DuckDB over the Delta tables, each registered as a view named `layer.name`.

DuckDB reads Delta through its `delta` extension, loaded from the PyPI package
`duckdb-extension-delta` (no download at run time, so it works offline). On an S3 lake delta-rs
reads the table's snapshot (with the lake's storage options) and DuckDB scans it as an Arrow dataset.

Read-only by contract. After the views are registered the connection is locked down:
- file access is limited to the lake (`enable_external_access=false` with `allowed_directories`
  set to the lake root), so `read_text('/etc/...')`, `ATTACH` and `INSTALL` fail;
- no extension can be loaded unsigned (`allow_unsigned_extensions=false`);
- `lock_configuration=true`, so a query cannot `SET` any of this back;
- only SELECT-like statements run (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, PRAGMA of the
  read-only kind, EXPLAIN): COPY, EXPORT, CREATE, INSERT, ATTACH, LOAD, CALL and SET are refused
  before anything runs, since `allowed_directories` would let COPY overwrite a `_delta_log`.
A table that cannot be read (a broken log, a missing file) becomes a view that raises an error
naming that table when queried; every other table stays queryable.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
from deltalake.exceptions import DeltaError

from jobs.lake.lake import Lake
from jobs.lake.tables import TABLES
from precis.errors import MissingPrerequisite, QueryRefused

log = logging.getLogger(__name__)

# Statements `precis sql` runs; everything else is refused (see the module docstring).
READ_ONLY_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


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


def _quote(text: str) -> str:
    return text.replace("'", "''")


def connect(lake: Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory, read-only DuckDB with every registered table as a view `layer.name`: the
    Delta table where it exists, else an empty table of its schema (so a query written for a table
    that no job has filled yet runs and returns nothing, instead of failing)."""
    con = duckdb.connect(config={"allow_unsigned_extensions": "false"})
    con.execute(f"LOAD '{_quote(str(delta_extension_path()))}'")
    existing = {s.qualified_name for s in lake.existing_tables()}
    for spec in TABLES.values():
        if spec.layer == "test" and spec.qualified_name not in existing:
            continue
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{spec.layer}"')
        view = f'"{spec.layer}"."{spec.name}"'
        if spec.qualified_name in existing:
            try:
                if lake.cfg.lake_on_s3:
                    # DuckDB would need its httpfs extension (a download) for S3; delta-rs reaches the
                    # store with the lake's own storage options and hands DuckDB an Arrow dataset
                    # of the current snapshot, which it scans lazily with filters pushed down
                    con.register(f"__delta_{spec.layer}_{spec.name}", lake.delta_table(spec).to_pyarrow_dataset())
                    con.execute(f'CREATE VIEW {view} AS SELECT * FROM "__delta_{spec.layer}_{spec.name}"')
                else:
                    con.execute(f"CREATE VIEW {view} AS SELECT * FROM delta_scan('{_quote(lake.path(spec))}')")
            except (duckdb.Error, DeltaError, OSError) as exc:
                reason = str(exc).splitlines()[0][:300]
                log.warning("sql: %s cannot be read (%s); querying it raises an error", spec.qualified_name, reason)
                message = f"table {spec.qualified_name} cannot be read: {reason}"
                con.execute(f"CREATE VIEW {view} AS SELECT error('{_quote(message)}') AS unreadable")
        else:
            empty = spec.schema.empty_table()
            con.register(f"__empty_{spec.layer}_{spec.name}", empty)
            con.execute(f'CREATE VIEW {view} AS SELECT * FROM "__empty_{spec.layer}_{spec.name}"')
    _lock_down(con, lake.root)
    return con


def _lock_down(con: duckdb.DuckDBPyConnection, root: str) -> None:
    con.execute(f"SET allowed_directories = ['{_quote(root.rstrip('/') + '/')}']")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> list:
    """The query's statements; the whole query is refused, before any of it runs, if one is not SELECT-like."""
    statements = con.extract_statements(query)
    for statement in statements:
        if statement.type not in READ_ONLY_STATEMENTS:
            kind = statement.type.name
            raise QueryRefused(f"precis sql is read-only: {kind} statements are refused "
                               f"({statement.query.strip()[:80]!r}); query with SELECT, and write tables with `precis job`")
    return statements


def run_sql(lake: Lake, query: str):
    """The last statement's result as a pandas DataFrame (the statements run in order)."""
    return run_statements(lake, query)[-1]


def run_statements(lake: Lake, query: str) -> list:
    """Each statement's result, in order, as pandas DataFrames (none runs unless all are read-only)."""
    con = connect(lake)
    try:
        statements = check_read_only(con, query)
        return [con.execute(statement).fetchdf() for statement in statements] or [con.execute(query).fetchdf()]
    finally:
        con.close()
