"""Delta tables: the registry, the writers and the readers. Only `jobs/` imports this package."""

from jobs.lake.lake import Lake, LakeConflict, LakeError, WriteResult
from jobs.lake.tables import TABLES, TableSpec, get_table, register

__all__ = ["Lake", "LakeConflict", "LakeError", "WriteResult", "TABLES", "TableSpec", "get_table", "register"]
