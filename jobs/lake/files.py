"""Executor side of the embedded Delta writer: each Spark task writes its rows as Parquet files
straight into the table folder and returns one small row per file describing it (a Delta `add`
action). Only those descriptions travel to the driver, which commits them in one transaction.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# What the driver gets back for each written file.
ADD_ACTION_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), False),
        pa.field("size", pa.int64(), False),
        pa.field("partition_value", pa.string()),
        pa.field("num_records", pa.int64(), False),
        pa.field("stats", pa.string(), False),
    ]
)
ADD_ACTION_DDL = "path string, size bigint, partition_value string, num_records bigint, stats string"

NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
# Strings longer than this get no min/max statistic: a truncated max would be below the true max
# and make readers skip files they must read.
_MAX_STAT_STRING = 32


def _stat_eligible(typ: pa.DataType) -> bool:
    return pa.types.is_integer(typ) or pa.types.is_string(typ) or pa.types.is_large_string(typ)


@dataclass
class _FileStats:
    """Delta per-file statistics, accumulated batch by batch."""

    schema: pa.Schema
    num_records: int = 0
    null_count: dict[str, int] = field(default_factory=dict)
    mins: dict[str, object] = field(default_factory=dict)
    maxs: dict[str, object] = field(default_factory=dict)
    no_minmax: set[str] = field(default_factory=set)

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        self.num_records += batch.num_rows
        for name in batch.schema.names:
            col = batch.column(name)
            self.null_count[name] = self.null_count.get(name, 0) + col.null_count
            typ = batch.schema.field(name).type
            if not _stat_eligible(typ) or name in self.no_minmax or col.null_count == len(col):
                continue
            mm = pc.min_max(col).as_py()
            lo, hi = mm["min"], mm["max"]
            if isinstance(lo, str) and (len(lo) > _MAX_STAT_STRING or len(hi) > _MAX_STAT_STRING):
                self.no_minmax.add(name)
                self.mins.pop(name, None)
                self.maxs.pop(name, None)
                continue
            self.mins[name] = lo if name not in self.mins else min(self.mins[name], lo)
            self.maxs[name] = hi if name not in self.maxs else max(self.maxs[name], hi)

    def to_json(self) -> str:
        flat = [f.name for f in self.schema if not pa.types.is_nested(f.type)]
        return json.dumps(
            {
                "numRecords": self.num_records,
                "minValues": {k: v for k, v in self.mins.items() if k in flat},
                "maxValues": {k: v for k, v in self.maxs.items() if k in flat},
                "nullCount": {k: v for k, v in self.null_count.items() if k in flat},
            },
            separators=(",", ":"),
        )


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Select and cast to the table schema; a null in a non-nullable column is an error here,
    before anything reaches the table."""
    missing = [n for n in schema.names if n not in batch.schema.names]
    if missing:
        raise ValueError(f"rows are missing columns {missing} of the table schema")
    arrays = []
    for f in schema:
        col = batch.column(f.name)
        if col.type != f.type:
            col = col.cast(f.type)
        if not f.nullable and col.null_count:
            raise ValueError(f"column '{f.name}' is declared non-nullable but {col.null_count} rows are null")
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def filesystem(uri: str, storage_options: dict[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """pyarrow's file system and path for a lake URI. A local path is itself; `s3://` and `s3a://`
    go to pyarrow's S3FileSystem, set from the same delta-rs `storage_options` the lake commits
    with (endpoint, region, plain HTTP, path-style addressing), so executors write where the driver
    commits. Credentials are not read from the options: pyarrow's default chain takes them from the
    environment or the instance's role, as delta-rs and S3A do."""
    if not uri.startswith(("s3://", "s3a://")):
        return pafs.FileSystem.from_uri(uri)
    opts = {k.upper(): v for k, v in (storage_options or {}).items()}
    kwargs: dict[str, object] = {}
    endpoint = opts.get("AWS_ENDPOINT_URL") or opts.get("AWS_ENDPOINT")
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or endpoint
        kwargs["scheme"] = parsed.scheme or "https"
        kwargs["force_virtual_addressing"] = opts.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false").lower() == "true"
    region = opts.get("AWS_REGION") or opts.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs), uri.split("://", 1)[1]


def write_partition_files(
    batches: Iterator[pa.RecordBatch],
    *,
    table_uri: str,
    schema: pa.Schema,
    partition_col: str | None,
    storage_options: dict[str, str] | None = None,
    max_rows_per_file: int = 1_000_000,
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: write this task's rows, yield one add-action row per written file."""
    fs, root = filesystem(table_uri, storage_options)
    data_schema = pa.schema([f for f in schema if f.name != partition_col])
    open_files: dict[str | None, tuple[pq.ParquetWriter, str, _FileStats]] = {}
    done: list[dict[str, object]] = []

    def close(key: str | None) -> None:
        writer, rel, stats = open_files.pop(key)
        writer.close()
        size = fs.get_file_info(f"{root}/{rel}").size
        done.append(
            {"path": rel, "size": size, "partition_value": key, "num_records": stats.num_records, "stats": stats.to_json()}
        )

    def open_file(key: str | None) -> None:
        name = f"part-{uuid.uuid4().hex}-c000.snappy.parquet"
        if partition_col is None:
            rel = name
            fs.create_dir(root, recursive=True)  # a first write to an unpartitioned table
        else:
            folder = quote(key if key is not None else NULL_PARTITION, safe="")
            rel = f"{partition_col}={folder}/{name}"
            fs.create_dir(f"{root}/{partition_col}={folder}", recursive=True)
        writer = pq.ParquetWriter(f"{root}/{rel}", data_schema, filesystem=fs, compression="snappy")
        open_files[key] = (writer, rel, _FileStats(data_schema))

    for batch in batches:
        if batch.num_rows == 0:
            continue
        batch = conform(batch, schema)
        groups: list[tuple[str | None, pa.RecordBatch]]
        if partition_col is None:
            groups = [(None, batch)]
        else:
            col = batch.column(partition_col)
            groups = []
            for value in pc.unique(col).to_pylist():
                mask = pc.is_null(col) if value is None else pc.equal(col, value)
                groups.append((None if value is None else str(value), batch.filter(mask)))
        for key, part in groups:
            part = part.select(data_schema.names)
            if key not in open_files:
                open_file(key)
            writer, _, stats = open_files[key]
            writer.write_batch(part)
            stats.update(part)
            if stats.num_records >= max_rows_per_file:
                close(key)
    for key in list(open_files):
        close(key)
    if done:
        yield pa.RecordBatch.from_pylist(done, schema=ADD_ACTION_SCHEMA)


def now_ms() -> int:
    return int(time.time() * 1000)
