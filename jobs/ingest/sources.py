"""Input files: checking them before any work, cutting them into Spark tasks, reading records.

A *unit* is one Spark task's share of an input: a line-aligned byte range of an uncompressed
JSON-lines file (so one large file is parsed in parallel), or a whole gzip, CSV or Parquet file.
Line numbers are exact in every case: the planner counts the newlines before each range.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from precis.errors import IngestError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"
SNIFF_BYTES = 256 * 1024
# A CSV field may be this long (Python's default, 128 KiB, would fail the whole file on one long
# description); the record is then validated like any other.
CSV_FIELD_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class Unit:
    path: str
    fmt: str  # jsonl | csv | parquet
    start: int = 0
    end: int | None = None  # exclusive; None: to the end
    first_line: int = 1
    gzip: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _head(path: Path, n: int = 4) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def is_gzip(path: Path) -> bool:
    return _head(path, 2) == GZIP_MAGIC


def check_readable(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise IngestError(f"{p}: no such file")
    if not p.is_file():
        raise IngestError(f"{p}: not a regular file")
    try:
        with open(p, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise IngestError(f"{p}: cannot be read ({exc.strerror})") from None
    return p.resolve()


def open_text_head(path: Path, max_bytes: int = 256 * 1024) -> str:
    """The first bytes of a (possibly gzipped) file as text, for sniffing formats."""
    try:
        if is_gzip(path):
            with gzip.open(path, "rb") as fh:
                data = fh.read(max_bytes)
        else:
            with open(path, "rb") as fh:
                data = fh.read(max_bytes)
    except (OSError, EOFError) as exc:
        raise IngestError(f"{path}: cannot be read as plain or gzip text ({exc})") from None
    return data.decode("utf-8", errors="replace")


def sniff_jsonl(path: Path, what: str) -> None:
    """A JSON-lines file has JSON objects among its first lines; a CSV, Parquet file or binary does not.
    Individual bad lines are quarantined later; only a file with no JSON object at all is refused."""
    if _head(path) == PARQUET_MAGIC:
        raise IngestError(f"{path}: is a Parquet file, expected {what} as JSON lines (.jsonl or .jsonl.gz)")
    head = open_text_head(path, SNIFF_BYTES).removeprefix("\ufeff")
    lines = [ln for ln in head.splitlines() if ln.strip()][:50]
    if len(lines) == 1 and len(head.encode("utf-8", "surrogateescape")) >= SNIFF_BYTES:
        # one record longer than the sniffed head: judge it by its start; it is validated later
        if lines[0].lstrip().startswith("{"):
            return
    for line in lines[:-1] if len(lines) > 1 else lines:
        try:
            if isinstance(json.loads(line), dict):
                return
        except json.JSONDecodeError:
            continue
    if not lines:
        return  # an empty file ingests nothing, which is not an error
    raise IngestError(f"{path}: no JSON object in its first {len(lines)} lines; expected {what} as JSON lines")


def csv_header(path: Path) -> list[str]:
    head = open_text_head(path, 64 * 1024).removeprefix("\ufeff")
    try:
        return next(csv.reader(io.StringIO(head)))
    except (StopIteration, csv.Error):
        return []


def plan_jsonl_units(path: Path, split_bytes: int) -> list[Unit]:
    """Cut an uncompressed file into line-aligned ranges of about `split_bytes`; gzip stays whole."""
    if is_gzip(path):
        return [Unit(str(path), "jsonl", gzip=True)]
    size = path.stat().st_size
    units: list[Unit] = []
    start, line = 0, 1
    with open(path, "rb") as fh:
        while start < size:
            target = start + split_bytes
            if target >= size:
                units.append(Unit(str(path), "jsonl", start, None, line))
                break
            fh.seek(target)
            fh.readline()  # finish the line that straddles the cut
            end = fh.tell()
            # Count the newlines in [start, end) to know the next range's first line number.
            fh.seek(start)
            remaining, newlines = end - start, 0
            while remaining:
                chunk = fh.read(min(remaining, 8 * 1024 * 1024))
                newlines += chunk.count(b"\n")
                remaining -= len(chunk)
            units.append(Unit(str(path), "jsonl", start, end, line))
            start, line = end, line + newlines
    return units or [Unit(str(path), "jsonl")]


def iter_jsonl(unit: Unit) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes without the newline) for each non-blank line of the unit."""
    if unit.gzip:
        fh: io.BufferedIOBase = gzip.open(unit.path, "rb")  # type: ignore[assignment]
    else:
        fh = open(unit.path, "rb")
    with fh:
        if unit.start:
            fh.seek(unit.start)
        pos = unit.start
        line_no = unit.first_line
        for raw in fh:
            if unit.end is not None and pos >= unit.end:
                break
            pos += len(raw)
            stripped = raw.rstrip(b"\r\n")
            if line_no == 1:  # a UTF-8 byte-order mark belongs to the file, not its first record
                stripped = stripped.removeprefix(UTF8_BOM)
            if stripped.strip():
                yield line_no, stripped
            line_no += 1


def _open_text(path: str, is_gz: bool) -> io.TextIOBase:
    # surrogateescape keeps invalid bytes visible per record, so one bad record is quarantined
    # instead of the whole file failing to decode.
    # utf-8-sig: a byte-order mark is dropped instead of becoming part of the first column's name.
    if is_gz:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="surrogateescape", newline="")
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def iter_csv(unit: Unit) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(first line of the record, row dict or None if it has the wrong number of fields, raw text)."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with _open_text(unit.path, unit.gzip) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        last = reader.line_num
        for fields in reader:
            start, last = last + 1, reader.line_num
            buf = io.StringIO()
            csv.writer(buf, lineterminator="").writerow(fields)
            raw = buf.getvalue()
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                yield start, None, raw
            else:
                yield start, dict(zip(header, fields)), raw


def iter_parquet(unit: Unit) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row dict) for each row of a Parquet file."""
    import pyarrow.parquet as pq

    row = 1
    for batch in pq.ParquetFile(unit.path).iter_batches(batch_size=4096):
        for rec in batch.to_pylist():
            yield row, rec
            row += 1


def has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def printable_raw(raw: bytes | str) -> str:
    """Raw record text for the quarantine: invalid bytes shown as \\xNN escapes."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="backslashreplace")
    return raw.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")
