"""Precis's one error hierarchy: every error class lives in precis/errors.py, the lower layers
import nothing of tables or orchestration, the CLI prints one actionable line, and the DAG
decides on the class of an error, never on its text."""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from precis import errors
from tests.conftest import REPO

PRECIS = str(Path(sys.executable).with_name("precis"))
PACKAGES = ("jobs", "generator", "training", "ranker", "dags", "precis")


def _modules(*packages: str):
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def test_every_public_error_class_lives_in_precis_errors():
    strays = []
    for path, tree in _modules(*PACKAGES):
        if path == REPO / "precis" / "errors.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if any(b.endswith(("Error", "Exception")) or b in {"Rejected", "InvalidOutput"} for b in bases):
                    strays.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert strays == [], "error classes outside precis/errors.py: " + ", ".join(strays)


def test_lower_layers_know_nothing_of_tables_or_orchestration():
    forbidden = ("jobs", "dags", "pyspark", "delta", "deltalake", "airflow", "duckdb", "great_expectations")
    found = []
    for path, tree in _modules("ranker", "generator", "training", "precis"):
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            found += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert found == []


def test_hierarchy_keeps_builtin_types_and_pickles():
    e = errors.NoRanker("no trained ranker under /x", "run `precis train ranker` first")
    assert isinstance(e, errors.MissingPrerequisite) and isinstance(e, FileNotFoundError)
    assert isinstance(e, errors.PrecisError)
    assert str(e) == "no trained ranker under /x; run `precis train ranker` first"
    back = pickle.loads(pickle.dumps(e))  # crosses Spark workers and Airflow task processes
    assert type(back) is errors.NoRanker and (back.what, back.how) == (e.what, e.how)
    for cls in (errors.ConfigError, errors.Rejected, errors.InvalidOutput):
        assert issubclass(cls, ValueError) and issubclass(cls, errors.PrecisError)


def test_exit_codes_separate_usage_from_failed_work():
    """2: the user gave something that cannot be used; 1: the work was tried and failed."""
    for cls in (errors.ConfigError, errors.UsageError, errors.MissingPrerequisite, errors.IngestError,
                errors.QueryRefused, errors.LakeError):
        assert cls.exit_code == 2, cls
    for cls in (errors.QualityGateFailed, errors.PublishRefused, errors.LakeConflict, errors.LakeUnreachable):
        assert cls.exit_code == 1 and issubclass(cls, errors.PrecisError), cls


def test_missing_prerequisite_is_one_actionable_line(tmp_path):
    out = subprocess.run([PRECIS, "--lake", str(tmp_path / "lake"), "rerank", "running shoes", "p1"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 2
    lines = [l for l in out.stderr.splitlines() if l.startswith("precis: error:")]
    assert lines and "precis train ranker" in lines[0]
    assert "Traceback" not in out.stderr


def test_dag_skips_on_no_ranker_and_fails_on_other_missing_prerequisites(monkeypatch):
    """Decided by type: a missing prerequisite whose text mentions a ranker still fails the task."""
    from airflow.sdk.exceptions import AirflowSkipException

    from jobs import orchestration, pipeline

    def no_ranker(lake, ds):
        raise errors.NoRanker("no trained ranker under lake/_artifacts/ranker", "run `precis train ranker` first")

    def other(lake, ds):
        raise errors.MissingPrerequisite("no evaluation queries: the ranker's held-out queries are not in bronze.judgments")

    monkeypatch.setitem(pipeline.STEPS, "evaluate_ranking", no_ranker)
    with pytest.raises(AirflowSkipException, match="precis train ranker"):
        orchestration.run_in_process("evaluate_ranking", "2026-11-23")
    monkeypatch.setitem(pipeline.STEPS, "evaluate_ranking", other)
    with pytest.raises(errors.MissingPrerequisite, match="held-out queries"):
        orchestration.run_in_process("evaluate_ranking", "2026-11-23")
