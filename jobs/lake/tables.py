"""The registry of Delta tables, with explicit schemas.

Schemas are declared here, never inferred: Spark's `toArrow()` marks every column non-nullable and
readers in other engines (DuckDB, delta-rs) must agree with the writers. A table is addressed as
`layer.name` and lives in the folder `<lake.root>/<layer>/<name>`.

Every table is declared here, so `precis tables`, `precis sql` and the quality gates see all of
them whichever job ran; `register()` also serves tests that need a scratch table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableSpec:
    """One Delta table: where it lives, its columns, and how rows are identified."""

    layer: str
    name: str
    schema: pa.Schema
    keys: tuple[str, ...]
    """Columns that identify a row; merges upsert on them and quality gates check their uniqueness."""
    partition_by: tuple[str, ...] = ("ds",)
    """At most one column; `ds` (YYYY-MM-DD, the run date) for tables that grow daily."""
    description: str = ""
    content_ignore: tuple[str, ...] = field(default=("ds", "ingested_at"))
    """Columns that do not count as content: a row equal to the stored one but for these is unchanged."""

    def __post_init__(self) -> None:
        if len(self.partition_by) > 1:
            raise ValueError(f"{self.qualified_name}: at most one partition column is supported")
        missing = [c for c in (*self.keys, *self.partition_by) if c not in self.schema.names]
        if missing:
            raise ValueError(f"{self.qualified_name}: columns {missing} are not in the schema")

    @property
    def qualified_name(self) -> str:
        return f"{self.layer}.{self.name}"

    @property
    def content_columns(self) -> list[str]:
        return [c for c in self.schema.names if c not in self.content_ignore]


TABLES: dict[str, TableSpec] = {}


def register(spec: TableSpec) -> TableSpec:
    existing = TABLES.get(spec.qualified_name)
    if existing is not None and existing != spec:
        raise ValueError(f"table {spec.qualified_name} is registered twice with different specs")
    TABLES[spec.qualified_name] = spec
    return spec


def get_table(qualified_name: str) -> TableSpec:
    try:
        return TABLES[qualified_name]
    except KeyError:
        known = ", ".join(sorted(TABLES))
        raise KeyError(f"unknown table '{qualified_name}'; known tables: {known}") from None


def _f(name: str, typ: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


BRONZE_REVIEWS = register(
    TableSpec(
        layer="bronze",
        name="reviews",
        keys=("review_id",),
        description="Amazon reviews (2018 and 2023 schemas) in one shape; one row per distinct record.",
        schema=pa.schema(
            [
                _f("review_id", pa.string(), False),  # sha256 of the record's canonical JSON
                _f("user_id", pa.string(), False),
                _f("product_id", pa.string(), False),  # asin
                _f("parent_product_id", pa.string()),  # parent_asin (2023 schema only)
                _f("rating", pa.float64(), False),  # 1-5
                _f("title", pa.string()),  # 2018 `summary`, 2023 `title`
                _f("text", pa.string()),  # 2018 `reviewText`, 2023 `text`
                _f("review_time", UTC_TS),
                _f("helpful_votes", pa.int64()),
                _f("verified", pa.bool_()),
                _f("style", pa.string()),  # JSON object as text, e.g. {"Size:": "7 oz"}
                _f("images", pa.list_(pa.string())),
                _f("category", pa.string()),
                _f("source_schema", pa.string(), False),  # amazon2018 | amazon2023
                _f("source_file", pa.string(), False),
                _f("source_line", pa.int64(), False),
                _f("ingested_at", UTC_TS, False),
                _f("ds", pa.string(), False),
            ]
        ),
    )
)

BRONZE_PRODUCTS = register(
    TableSpec(
        layer="bronze",
        name="products",
        keys=("product_id",),
        description="Product text from relevance sources; descriptions raw and cleaned of HTML.",
        schema=pa.schema(
            [
                _f("product_id", pa.string(), False),  # ESCI product_id; CrowdFlower: a content hash
                _f("title", pa.string(), False),
                _f("description_raw", pa.string()),
                _f("description", pa.string()),  # HTML removed, whitespace folded
                _f("bullets", pa.string()),
                _f("brand", pa.string()),
                _f("color", pa.string()),
                _f("locale", pa.string()),
                _f("source", pa.string(), False),  # crowdflower | esci
                _f("source_file", pa.string(), False),
                _f("ingested_at", UTC_TS, False),
                _f("ds", pa.string(), False),
            ]
        ),
    )
)

BRONZE_JUDGMENTS = register(
    TableSpec(
        layer="bronze",
        name="judgments",
        keys=("judgment_id",),
        description="Human relevance judgments of (query, product) with the raw label and a gain in [0, 1].",
        schema=pa.schema(
            [
                _f("judgment_id", pa.string(), False),  # source:native id
                _f("query_id", pa.string(), False),
                _f("query", pa.string(), False),
                _f("product_id", pa.string(), False),
                _f("label", pa.string(), False),  # CrowdFlower 1-4, ESCI E/S/C/I
                _f("gain", pa.float64(), False),
                _f("label_variance", pa.float64()),
                _f("split", pa.string()),
                _f("source", pa.string(), False),
                _f("source_file", pa.string(), False),
                _f("source_line", pa.int64()),
                _f("ingested_at", UTC_TS, False),
                _f("ds", pa.string(), False),
            ]
        ),
    )
)

BRONZE_QUARANTINE = register(
    TableSpec(
        layer="bronze",
        name="quarantine",
        keys=("quarantine_id",),
        description="Every rejected input record: where it came from, its raw text and why.",
        schema=pa.schema(
            [
                _f("quarantine_id", pa.string(), False),  # hash of (file name, line, raw bytes)
                _f("source", pa.string(), False),  # reviews | crowdflower | esci
                _f("source_file", pa.string(), False),
                _f("source_line", pa.int64()),
                _f("raw", pa.string()),  # at most ingest.raw_max_chars characters
                _f("raw_truncated", pa.bool_(), False),
                _f("reason", pa.string(), False),
                _f("ingested_at", UTC_TS, False),
                _f("ds", pa.string(), False),
            ]
        ),
    )
)


BRONZE_INGESTED_FILES = register(
    TableSpec(
        layer="bronze",
        name="ingested_files",
        keys=("source", "sha256"),
        description="Every input file ingested, by content: a file whose bytes are already here is not parsed again.",
        content_ignore=("ds", "ingested_at", "path"),
        schema=pa.schema(
            [
                _f("source", pa.string(), False),  # reviews | crowdflower | esci
                _f("sha256", pa.string(), False),  # of the file's bytes as stored (compressed or not)
                _f("path", pa.string(), False),  # where it was first read from
                _f("size_bytes", pa.int64(), False),
                _f("records", pa.int64(), False),  # rows parsed from it: valid and quarantined
                _f("ingested_at", UTC_TS, False),
                _f("ds", pa.string(), False),  # the run that first ingested it
            ]
        ),
    )
)


SILVER_RELSUM_PAIRS = register(
    TableSpec(
        layer="silver",
        name="relsum_pairs",
        keys=("judgment_id",),
        description="Judged (query, product) pairs whose description moves the ranker's score by >= tau.",
        content_ignore=("ds", "scored_at"),
        schema=pa.schema(
            [
                _f("judgment_id", pa.string(), False),
                _f("query_id", pa.string(), False),
                _f("query", pa.string(), False),
                _f("product_id", pa.string(), False),
                _f("title", pa.string(), False),
                _f("description", pa.string(), False),
                _f("gain", pa.float64(), False),  # the label ReLSum's reward compares against
                _f("score_title", pa.float64(), False),  # r(q, title)
                _f("score_desc", pa.float64(), False),  # r(q, title + description)
                _f("delta", pa.float64(), False),  # score_desc - score_title
                _f("ranker_version", pa.string(), False),
                _f("scored_at", UTC_TS, False),
                _f("ds", pa.string(), False),
            ]
        ),
    )
)

SILVER_RANKER_SCORES = register(
    TableSpec(
        layer="silver",
        name="ranker_scores",
        keys=("score_key",),
        partition_by=(),
        description="Every (query, product text) the ranker has scored, by ranker version and graph: "
        "description_delta and evaluate_ranking score only what is not here yet.",
        content_ignore=("scored_at",),
        schema=pa.schema(
            [
                _f("score_key", pa.string(), False),  # sha256 of (ranker version + manifest hash, graph, max length, query, text)
                _f("ranker_version", pa.string(), False),  # the registry folder, e.g. v0001
                _f("model_file", pa.string(), False),  # the ONNX graph scored with (model.opt.onnx)
                _f("score", pa.float64(), False),
                _f("scored_at", UTC_TS, False),
            ]
        ),
    )
)


EVAL_RANKING_SCORES = register(
    TableSpec(
        layer="eval",
        name="ranking_scores",
        keys=("variant", "query_id", "product_id"),
        description="Per-pair scores of every product-text variant, for the ranking metrics and PR curves.",
        schema=pa.schema(
            [
                _f("variant", pa.string(), False),  # none | desc | bm25 | untrained | summary variants
                _f("query_id", pa.string(), False),
                _f("query", pa.string(), False),
                _f("product_id", pa.string(), False),
                _f("gain", pa.float64(), False),
                _f("score", pa.float64(), False),
                _f("scorer", pa.string(), False),  # ranker version, or bm25
                _f("ds", pa.string(), False),
            ]
        ),
    )
)

EVAL_RANKING_METRICS = register(
    TableSpec(
        layer="eval",
        name="ranking_metrics",
        keys=("variant", "split", "metric"),
        description="NDCG@5 and R@90P per product-text variant for all, head and tail queries, and for the "
                    "queries whose described products all have a summary in every summary variant.",
        schema=pa.schema(
            [
                _f("variant", pa.string(), False),
                _f("split", pa.string(), False),  # all | head | tail | summarised
                _f("metric", pa.string(), False),  # ndcg@5 | r@90p
                _f("value", pa.float64()),
                _f("n_queries", pa.int64(), False),
                _f("n_pairs", pa.int64(), False),
                _f("queries", pa.string(), False),  # heldout | all
                _f("scorer", pa.string(), False),
                _f("ranker_version", pa.string()),
                _f("model_id", pa.string()),  # generator of the summaries, for summary variants
                _f("adapter_version", pa.string()),
                _f("ds", pa.string(), False),
            ]
        ),
    )
)


# ---------------------------------------------------------------- generation (SUMFORU, EXP3RT, RPO, ReLSum)
REVIEW_STRUCT = pa.struct(
    [
        pa.field("review_id", pa.string()),
        pa.field("product_id", pa.string()),
        pa.field("rating", pa.float64()),
        pa.field("title", pa.string()),
        pa.field("text", pa.string()),
        pa.field("review_time", UTC_TS),
    ]
)

SILVER_REVIEW_SAMPLES = register(
    TableSpec(
        layer="silver",
        name="review_samples",
        keys=("product_id", "review_id"),
        description="Every product's seeded sample of up to filter.sample_max train reviews (held-out reviews "
        "never), stratified by rating; golden products have >= filter.golden_min_reviews reviews.",
        schema=pa.schema(
            [
                _f("product_id", pa.string(), False),
                _f("review_id", pa.string(), False),
                _f("user_id", pa.string(), False),
                _f("rating", pa.float64(), False),
                _f("title", pa.string()),
                _f("text", pa.string()),
                _f("product_reviews", pa.int64(), False),  # all reviews of the product
                _f("sample_rank", pa.int64(), False),  # 1..sample size, the stratified order
                _f("ds", pa.string(), False),
            ]
        ),
    )
)

SILVER_REVIEW_SPLIT = register(
    TableSpec(
        layer="silver",
        name="review_split",
        keys=("review_id",),
        description="The evaluation split of the reviews of active users: each one's most recent review is "
        "held out (ties broken by a seeded hash of the review id), the rest is train. Nothing that is "
        "generated or trained from reviews sees a held-out review; evaluation pairs are (user, held-out product).",
        schema=pa.schema(
            [
                _f("review_id", pa.string(), False),
                _f("user_id", pa.string(), False),
                _f("product_id", pa.string(), False),
                _f("rating", pa.float64(), False),  # the actual rating: ground truth for held-out pairs
                _f("split", pa.string(), False),  # train | heldout
                _f("ds", pa.string(), False),
            ]
        ),
    )
)

SILVER_USER_HISTORIES = register(
    TableSpec(
        layer="silver",
        name="user_histories",
        keys=("user_id",),
        description="Active users (>= filter.active_min_reviews reviews) with their train reviews, oldest first "
        "(held-out reviews are in silver.review_split only).",
        schema=pa.schema(
            [
                _f("user_id", pa.string(), False),
                _f("n_reviews", pa.int64(), False),  # train reviews
                _f("mean_rating", pa.float64(), False),  # over train reviews
                _f("reviews", pa.list_(REVIEW_STRUCT), False),
                _f("ds", pa.string(), False),
            ]
        ),
    )
)


def _provenance() -> list[pa.Field]:
    """What every model output records about what made it."""
    return [
        _f("model_id", pa.string(), False),
        _f("adapter_version", pa.string(), False),  # "base" when no adapter
        _f("prompt_version", pa.string(), False),  # hash of the task's template
        _f("input_hash", pa.string(), False),  # hash of the exact inputs
        _f("generated_at", UTC_TS, False),
        _f("ds", pa.string(), False),
    ]


_MODEL_KEYS = ("model_id", "adapter_version", "prompt_version")
_GEN_IGNORE = ("ds", "generated_at")


def _gold(layer: str, name: str, keys: tuple[str, ...], fields: list[pa.Field], description: str) -> TableSpec:
    return register(
        TableSpec(
            layer=layer,
            name=name,
            keys=(*keys, *_MODEL_KEYS),
            description=description,
            content_ignore=_GEN_IGNORE,
            schema=pa.schema([*fields, *_provenance()]),
        )
    )


GOLD_PRODUCT_SUMMARIES = _gold(
    "gold", "product_summaries", ("product_id",),
    [_f("product_id", pa.string(), False), _f("summary", pa.string(), False)],
    "ReLSum: a concise ranking-oriented summary of each product's description.",
)
GOLD_PERSONAS = _gold(
    "gold", "personas", ("user_id",),
    [_f("user_id", pa.string(), False), _f("persona", pa.string(), False)],
    "SUMFORU: a shopper persona per active user, from the review history.",
)
GOLD_PERSONA_SUMMARIES = _gold(
    "gold", "persona_summaries", ("user_id", "product_id"),
    [_f("user_id", pa.string(), False), _f("product_id", pa.string(), False),
     _f("summary", pa.string(), False),
     _f("suitability", pa.int64(), False),  # the median of the model's 1-10 distribution
     _f("suitability_expected", pa.float64(), False),  # expected value of the model's 1-10 distribution
     _f("suitability_entropy", pa.float64(), False)],  # its entropy in bits (0 certain, log2(10) uniform)
    "SUMFORU: a persona-aware 2-3 sentence review summary with a 1-10 suitability score.",
)
SILVER_REVIEW_PREFERENCES = _gold(
    "silver", "review_preferences", ("review_id",),
    [_f("review_id", pa.string(), False), _f("user_id", pa.string(), False), _f("product_id", pa.string(), False),
     _f("rating", pa.float64(), False), _f("likes", pa.string(), False), _f("dislikes", pa.string(), False)],
    "EXP3RT: the preferences extracted from each review.",
)
GOLD_USER_PROFILES = _gold(
    "gold", "user_profiles", ("user_id",),
    [_f("user_id", pa.string(), False), _f("profile", pa.string(), False), _f("n_reviews", pa.int64(), False)],
    "EXP3RT: a user's preference profile aggregated from their reviews' preferences.",
)
GOLD_ITEM_PROFILES = _gold(
    "gold", "item_profiles", ("product_id",),
    [_f("product_id", pa.string(), False), _f("profile", pa.string(), False), _f("n_reviews", pa.int64(), False)],
    "EXP3RT: a product's profile aggregated from its reviews' preferences.",
)
GOLD_RATING_PREDICTIONS = _gold(
    "gold", "rating_predictions", ("user_id", "product_id"),
    [_f("user_id", pa.string(), False), _f("product_id", pa.string(), False), _f("reasoning", pa.string(), False),
     _f("predicted_rating", pa.int64(), False),  # the median of the model's 1-5 distribution
     _f("predicted_rating_expected", pa.float64(), False),  # expected value of the model's 1-5 distribution
     _f("predicted_rating_entropy", pa.float64(), False),  # its entropy in bits (0 certain, log2(5) uniform)
     _f("actual_rating", pa.float64())],
    "EXP3RT: step-by-step reasoning and a 1-5 rating prediction for (user, product).",
)
GOLD_PERSONALIZED_TEXTS = _gold(
    "gold", "personalized_texts", ("user_id", "product_id"),
    [_f("user_id", pa.string(), False), _f("product_id", pa.string(), False), _f("generic_text", pa.string(), False),
     _f("personalized_text", pa.string(), False), _f("history_review_ids", pa.list_(pa.string()), False)],
    "RPO: a generic product text rewritten for one user, guided by their most similar past reviews.",
)

SILVER_GENERATION_FAILURES = register(
    TableSpec(
        layer="silver",
        name="generation_failures",
        keys=("task", "entity_key", *_MODEL_KEYS),
        description="Model outputs that stayed invalid after the retries, with the reason; never in gold.",
        content_ignore=_GEN_IGNORE,
        schema=pa.schema(
            [
                _f("task", pa.string(), False),
                _f("entity_key", pa.string(), False),  # the row's key columns joined with '|'
                _f("reason", pa.string(), False),
                _f("raw_output", pa.string()),  # the last invalid output, at most 2,000 characters
                _f("attempts", pa.int64(), False),
                *_provenance(),
            ]
        ),
    )
)


# ---------------------------------------------------------------- quality, evaluation, serving
EVAL_QUALITY_RESULTS = register(
    TableSpec(
        layer="eval",
        name="quality_results",
        keys=("ds", "layer", "table_name", "expectation", "column_name"),
        description="Every Great Expectations outcome of the daily quality gates.",
        schema=pa.schema(
            [
                _f("ds", pa.string(), False),
                _f("layer", pa.string(), False),  # bronze | silver | gold
                _f("table_name", pa.string(), False),  # layer.name, or bronze.intake / gold.generation
                _f("expectation", pa.string(), False),  # e.g. expect_column_values_to_be_between
                _f("column_name", pa.string(), False),  # column(s), or * for table-level expectations
                _f("success", pa.bool_(), False),
                _f("observed", pa.string()),  # JSON: unexpected count and examples, or the observed value
                _f("severity", pa.string()),  # fail (blocks publish) | warn (reported only); null: fail
            ]
        ),
    )
)

EVAL_GENERATION_METRICS = register(
    TableSpec(
        layer="eval",
        name="generation_metrics",
        keys=("task", "model_id", "adapter_version", "metric"),
        description="Per task and generator: validity rate, output lengths, ROUGE-L against the teacher, rating errors.",
        schema=pa.schema(
            [
                _f("task", pa.string(), False),
                _f("model_id", pa.string(), False),
                _f("adapter_version", pa.string(), False),
                _f("metric", pa.string(), False),  # validity | mean_chars | p95_chars | rouge_l | mae | rmse | ...
                _f("value", pa.float64()),
                _f("n", pa.int64(), False),  # rows the metric is computed over
                _f("ds", pa.string(), False),
            ]
        ),
    )
)

SERVING_PRODUCT_SUMMARIES = register(
    TableSpec(
        layer="serving",
        name="product_summaries",
        keys=("product_id",),
        partition_by=(),
        description="What online rankers read: each product's current summary. Replaced in one commit by publish.",
        content_ignore=("published_at", "published_ds"),
        schema=pa.schema(
            [
                _f("product_id", pa.string(), False),
                _f("summary", pa.string(), False),
                _f("model_id", pa.string(), False),
                _f("adapter_version", pa.string(), False),
                _f("prompt_version", pa.string(), False),
                _f("input_hash", pa.string(), False),
                _f("generated_at", UTC_TS, False),
                _f("published_ds", pa.string(), False),  # the run that published this serving version
                _f("published_at", UTC_TS, False),
            ]
        ),
    )
)

SILVER_TEACHER_OUTPUTS = register(
    TableSpec(
        layer="silver",
        name="teacher_outputs",
        keys=("task", "input_hash", "teacher_id", "prompt_version"),
        description="Teacher-labelled training targets (validated by the task's parser), per task and teacher.",
        content_ignore=("ds", "labelled_at"),
        schema=pa.schema(
            [
                _f("task", pa.string(), False),
                _f("input_hash", pa.string(), False),
                _f("inputs", pa.string(), False),  # the prepared inputs as JSON
                _f("output_text", pa.string(), False),
                _f("teacher_id", pa.string(), False),
                _f("prompt_version", pa.string(), False),
                _f("labelled_at", UTC_TS, False),
                _f("ds", pa.string(), False),
            ]
        ),
    )
)

EVAL_TRAINING_RUNS = register(
    TableSpec(
        layer="eval",
        name="training_runs",
        keys=("run_id",),
        description="One row per training run: what was trained, on what, its curve and the promotion decision.",
        schema=pa.schema(
            [
                _f("run_id", pa.string(), False),  # <task>/<adapter version>
                _f("task", pa.string(), False),
                _f("method", pa.string(), False),  # sft | grpo | dpo | rlaif
                _f("adapter_version", pa.string(), False),
                _f("parent_adapter", pa.string()),
                _f("base_model", pa.string(), False),
                _f("examples", pa.int64(), False),
                _f("steps", pa.int64(), False),
                _f("seconds", pa.float64(), False),
                _f("reward_first10", pa.float64()),  # mean reward of the first 10 logged steps (RL)
                _f("reward_last10", pa.float64()),
                _f("loss_first10", pa.float64()),
                _f("loss_last10", pa.float64()),
                _f("reward_share", pa.float64()),  # share of the run's time spent computing rewards
                _f("eval_metric", pa.string()),
                _f("eval_value", pa.float64()),
                _f("baseline_value", pa.float64()),  # the current adapter's (or base model's) value
                _f("promoted", pa.bool_()),
                _f("curve_png", pa.string()),
                _f("data_snapshot", pa.string()),  # JSON: table versions and row counts read
                _f("ds", pa.string(), False),
            ]
        ),
    )
)
