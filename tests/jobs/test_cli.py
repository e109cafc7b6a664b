"""The `precis` command line: in-process for jobs that need Spark (sharing the test session),
as a real subprocess for what a user types that needs no JVM."""

import subprocess
import sys
from pathlib import Path

import pytest

from jobs.cli import main
from tests.conftest import BEAUTY, CROWDFLOWER, REPO

PRECIS = str(Path(sys.executable).with_name("precis"))


def run(*args, cwd=REPO):
    return subprocess.run([PRECIS, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_commands_and_precedence():
    out = run("--help")
    assert out.returncode == 0
    for word in ("models", "ingest", "tables", "sql", "PRECIS__", "--lake"):
        assert word in out.stdout
    # every file the examples name exists
    import re
    named = re.findall(r"(?:data|sql)/\S+\.(?:gz|sql)", out.stdout)
    assert len(named) >= 3 and all((REPO / f).exists() for f in named), named
    sub = run("ingest", "relevance", "--help")
    assert sub.returncode == 0 and "crowdflower" in sub.stdout


def _commands(parser, path=()):
    """(words, parser) for every command and sub-command of `parser`."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


def test_every_command_has_help_for_every_argument(capsys):
    """`precis ... --help` of each command (run in-process: one JVM-free call each) exits 0 and shows
    a text for every argument; each command also says what it does."""
    import argparse

    from jobs.cli import build_parser

    commands = list(_commands(build_parser()))
    assert len(commands) >= 19 and ("train",) in [c for c, _ in commands] and ("gpu", "pack") in [c for c, _ in commands]
    missing = []
    for words, parser in commands:
        with pytest.raises(SystemExit) as exit_:
            main([*words, "--help"])
        out = capsys.readouterr().out
        assert exit_.value.code == 0 and out.startswith("usage: precis " + " ".join(words)), (words, out[:200])
        missing += [f"{' '.join(words)}: {a.dest}" for a in parser._actions
                    if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not a.help]
        if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            assert parser.description or parser.format_help().count("\n") > 3, words
    assert missing == []


def test_version_and_global_options_after_the_command(tmp_path):
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("precis ")
    after = run("tables", "--lake", str(tmp_path / "empty"))  # rejected as unrecognized before
    assert after.returncode == 0 and f"no tables under {tmp_path / 'empty'}" in after.stdout
    later_wins = run("--lake", str(tmp_path / "first"), "tables", "--lake", str(tmp_path / "second"))
    assert later_wins.returncode == 0 and "second" in later_wins.stdout
    kept = run("--lake", str(tmp_path / "first"), "tables")  # one given before the command is not reset
    assert kept.returncode == 0 and "first" in kept.stdout


def test_a_spark_command_prints_its_own_lines_and_no_library_banners(tmp_path):
    lake = str(tmp_path / "lake")
    ingest = run("--lake", lake, "ingest", "reviews", str(BEAUTY), "--date", "2024-06-01")
    gate = run("--lake", lake, "job", "gate_bronze", "--date", "2024-06-01")
    assert ingest.returncode == 0 and gate.returncode == 0, ingest.stderr[-2000:] + gate.stderr[-2000:]
    assert "PASSED" in gate.stdout
    for p in (ingest, gate):
        for banner in ("Setting default log level", "To adjust logging level", "great_expectations",
                       "Skipping registering", "aws_config", "Traceback", "Using incubator modules"):
            assert banner not in p.stderr, (banner, p.stderr[-2000:])
        # what is left: Precis's own progress lines (the JVM's start-up notice is dropped by jobs.spark)
        assert all(line.split(" ")[2].startswith(("jobs.", "precis:")) or line.startswith("  ")
                   for line in p.stderr.splitlines()), p.stderr[-2000:]


def test_sql_formats_for_analysts(tmp_path):
    q = "select * from (values (1, 'a', null), (2, null, 3.5), (3, 'c', 1.0)) t(x, y, z) order by x"
    csv = run("--lake", str(tmp_path), "sql", "--format", "csv", q)
    assert csv.stdout.splitlines() == ["x,y,z", "1,a,", "2,,3.5", "3,c,1.0"]
    json_lines = run("--lake", str(tmp_path), "sql", "--format", "json", q).stdout.splitlines()
    assert json_lines[1] == '{"x":2,"y":null,"z":3.5}' and len(json_lines) == 3
    md = run("--lake", str(tmp_path), "sql", "--format", "markdown", "--max-rows", "2", q).stdout.splitlines()
    assert md[0].startswith("|") and "NULL" in md[2] + md[3] and md[-1] == "... 1 more rows (--max-rows to show them)"
    # several statements: each result shown under its number (the first was dropped silently before);
    # csv and json, which have no room for two results, refuse them
    both = run("--lake", str(tmp_path), "sql", "select 1 as a; select 2 as b")
    assert both.returncode == 0 and both.stdout.split() == ["--", "result", "1", "of", "2", "a", "1",
                                                            "--", "result", "2", "of", "2", "b", "2"]
    two_csv = run("--lake", str(tmp_path), "sql", "--format", "csv", "select 1 as a; select 2 as b")
    assert two_csv.returncode == 2 and "takes one statement, the query has 2" in two_csv.stderr
    missing = run("--lake", str(tmp_path / "typo"), "sql", "select 1 as one")
    assert missing.returncode == 0 and "does not exist (a mistyped --lake?)" in missing.stderr


def test_errors_are_clear_and_nonzero(tmp_path):
    missing = run("--lake", str(tmp_path / "lake"), "ingest", "reviews", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    fmt = run("--lake", str(tmp_path / "lake"), "ingest", "relevance", str(CROWDFLOWER), "--format", "msmarco")
    assert fmt.returncode == 2 and "invalid choice" in fmt.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("spark:\n  mastr: x\n")
    conf = run("--config", str(bad), "tables")
    assert conf.returncode == 2 and "unknown key 'spark.mastr'" in conf.stderr
    date = run("ingest", "reviews", str(BEAUTY), "--date", "2024-13-01")
    assert date.returncode == 2 and "YYYY-MM-DD" in date.stderr
    ranker = run("train", "ranker", "--method", "sft")  # trained a ranker silently before
    assert ranker.returncode == 2 and ranker.stderr.startswith("precis: error: precis train ranker: --method")
    neither = run("sql")
    assert neither.returncode == 2 and "give either a QUERY or -f FILE" in neither.stderr
    folder = run("sql", "-f", "sql/")
    assert folder.returncode == 2 and "sql/ is not a file" in folder.stderr and "Traceback" not in folder.stderr
    # a mark-success pattern that marks no task is a typo: said before anything runs, with the task ids
    (tmp_path / "state.yaml").write_text(f"orchestration:\n  state_dir: {tmp_path / 'state'}\n")
    typo = run("--config", str(tmp_path / "state.yaml"), "--lake", str(tmp_path / "lake"), "run", "--date", "2024-06-01",
               "--mark-success-pattern", "generate_rating")
    assert typo.returncode == 2 and "matches no task of precis_daily" in typo.stderr, typo.stderr
    assert "generate_ratings" in typo.stderr and "Traceback" not in typo.stderr and not (tmp_path / "lake").exists()
    # failed work (here: an object-store lake this machine cannot reach) is one line, exit 1, naming
    # the lake and what to check
    remote = run("--config", "conf/cluster.example.yaml", "tables")
    assert remote.returncode == 1 and "Traceback" not in remote.stderr and "WARN" not in remote.stderr
    assert remote.stderr.strip().count("\n") == 0
    assert "cannot reach the lake at s3a://my-bucket/precis/lake" in remote.stderr and "credentials" in remote.stderr


def test_ingest_tables_and_sql(tmp_path, spark, capsys):
    lake = str(tmp_path / "lake")
    assert main(["--lake", lake, "ingest", "reviews", str(BEAUTY), "--date", "2024-02-02", "--category", "All Beauty"]) == 0
    assert "1027 duplicates" in capsys.readouterr().out
    assert main(["--lake", lake, "tables"]) == 0
    assert "bronze.reviews" in capsys.readouterr().out
    # sql needs no Spark: a real subprocess, as an analyst would run it
    out = run("--lake", lake, "sql", "select count(*) as n, count(distinct product_id) as p from bronze.reviews")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["n", "p", "4242", "85"]
    q = tmp_path / "q.sql"
    q.write_text("select category from bronze.reviews group by 1")
    assert run("--lake", lake, "sql", "-f", str(q)).stdout.split() == ["category", "All", "Beauty"]
    err = run("--lake", lake, "sql", "select * from bronze.nope")
    assert err.returncode == 2 and "SQL error" in err.stderr
