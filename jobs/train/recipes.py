"""One recipe per (task, method): what `precis train TASK --method M` runs, where its adapter is
registered (the generation task that loads it), which tables its data snapshot records, and whether
it starts from the task's newest adapter. The CLI's choices and the weekly DAG read `RECIPES`.

    relsum   sft (teacher) | grpo (reward: the frozen ONNX ranker) | dpo (pairs from that reward)
             | best-of-n (rejection sampling under that reward, then SFT on the kept summaries)
    sumforu  sft (teacher) | anchored-sft (suitability = 2 x the persona-holder's actual rating)
             | persona-sft (grounded personas) | rlaif (GRPO: an AI judge's reward, plus agreement with
             the persona-holder's actual rating where there is one)
    exp3rt   sft (teacher distillation of preference extraction)
             rationale-sft (rating prediction: reasoning written given the observed rating, then the rating)
    rpo      sft (teacher rewrites) | grpo (RL under the 2-to-6-shot history curriculum)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.lake import Lake
from jobs.train import datasets as D
from jobs.train import teacher as TS
from training.config import TrainingConfig


@dataclass
class RecipeRun:
    """What a recipe's run gets."""

    lake: Lake
    cfg: TrainingConfig  # with any --max-steps applied
    base: str  # base model folder
    out: Path  # the staging folder the adapter is written to
    parent: Path | None  # the adapter an RL run starts from
    ds: str

    @property
    def tokenizer(self):
        return D.load_tokenizer(self.lake)

    def limit(self, rows: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
        return D.within_prompt_limit(rows, self.cfg.train.max_prompt_chars, what)


@dataclass
class RecipeResult:
    run: Any  # training.common.RunLog
    examples: int
    reward: Any = None  # the reward callable of RL runs (its stats go to the manifest)
    metrics: dict[str, Any] = field(default_factory=dict)  # extra manifest metrics


@dataclass(frozen=True)
class Recipe:
    task: str  # `precis train TASK`
    method: str
    adapter_task: str  # registry folder: the generation task that loads the adapter
    run: Callable[[RecipeRun], RecipeResult]
    snapshot: tuple[str, ...]  # tables whose version and row count the manifest records
    from_parent: bool = False  # RL methods start from the task's newest adapter
    label: Callable[[Lake, str], Any] | None = None  # `--teacher-only`: label the training set, no training
    about: str = ""
    # what generation applies the adapter to (training.registry.SCOPES): `all`, or `score` for an
    # adapter trained on a task's score alone (the text is then the base model's)
    scope: str = "all"

    def __post_init__(self) -> None:
        from training.registry import SCOPES

        if not self.task or not self.method or not self.adapter_task:
            raise ValueError("a recipe needs its task, method and adapter task")
        if self.scope not in SCOPES:
            raise ValueError(f"recipe {self.task} {self.method}: scope must be one of {SCOPES}, got {self.scope!r}")


def _no_io(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "inputs"}


# ------------------------------------------------------------------ SFT on teacher outputs
def _sft(teacher_set: TS.TeacherSet) -> Callable[[RecipeRun], RecipeResult]:
    def run(r: RecipeRun) -> RecipeResult:
        from training.sft import run_sft

        data = r.limit(TS.sft_examples(r.lake, teacher_set, r.ds), f"{teacher_set.task_factory} sft")
        return RecipeResult(run_sft(r.base, data, r.cfg, r.out), len(data))

    return run


def _label(teacher_set: TS.TeacherSet) -> Callable[[Lake, str], Any]:
    return lambda lake, ds: TS.build_teacher_set(lake, teacher_set, ds)


# ------------------------------------------------------------------ ReLSum RL
def _relsum_grpo(r: RecipeRun) -> RecipeResult:
    from jobs.train.rewards import relsum_reward
    from training.grpo import run_grpo

    data = r.limit(D.relsum_rows(r.lake, r.tokenizer, r.cfg.train.max_examples), "relsum")
    reward = relsum_reward(r.lake)
    return RecipeResult(run_grpo(r.base, [_no_io(x) for x in data], reward, r.cfg, r.out, r.parent), len(data), reward)


def _relsum_dpo(r: RecipeRun) -> RecipeResult:
    from jobs.train.rewards import relsum_reward
    from training.dpo import run_dpo

    data = r.limit(D.relsum_rows(r.lake, r.tokenizer, r.cfg.train.max_examples), "relsum")
    reward = relsum_reward(r.lake)
    run, pairs = run_dpo(r.base, [_no_io(x) for x in data], reward, r.cfg, r.out, r.parent)
    return RecipeResult(run, len(data), reward, {"dpo_pairs": pairs})


def _relsum_best_of_n(r: RecipeRun) -> RecipeResult:
    """Best of `best_of_n` sampled summaries per product under the ranker's reward (mean over the
    product's judged training queries), kept when it parses, at least `min_support` of its words
    come from the product's own text, at most `max_title_share` are the title's, and it beats the
    title alone; then SFT on the kept ones."""
    from generator.tasks import relsum
    from jobs.train.rewards import relsum_reward
    from precis.errors import InvalidOutput
    from training.best_of_n import run_best_of_n

    data = r.limit(D.relsum_rows(r.lake, r.tokenizer, r.cfg.train.max_examples), "relsum")
    task, t = relsum.task(r.lake.cfg.generation.relsum_max_tokens), r.cfg.train
    inputs = {x["prompt"]: x["inputs"] for x in data}

    def keep(row: dict[str, Any], text: str) -> str:
        given = inputs[row["prompt"]]
        summary = task.parse(text.strip(), given)["summary"]
        if relsum.support(summary, given) < t.min_support:
            raise InvalidOutput(f"fewer than {t.min_support:.0%} of the summary's words are in the product's text")
        if relsum.title_share(summary, given) > t.max_title_share:
            raise InvalidOutput(f"more than {t.max_title_share:.0%} of the summary's words are the title's")
        return summary

    reward = relsum_reward(r.lake)
    run, sel = run_best_of_n(r.base, [_no_io(x) for x in data], reward, r.cfg, r.out, keep, r.parent)
    return RecipeResult(run, len(sel.examples), reward, {"best_of_n": sel.metrics()})


# ------------------------------------------------------------------ SUMFORU RLAIF
def _sumforu_rlaif(r: RecipeRun) -> RecipeResult:
    from jobs.train.rewards import judge_backend
    from training.rlaif import run_rlaif

    data = r.limit(D.sumforu_rows(r.lake, r.tokenizer, r.cfg.train.max_examples), "sumforu")
    run, reward = run_rlaif(r.base, [_no_io(x) for x in data], judge_backend(r.lake), r.cfg, r.out, r.parent)
    rated = sum(x["actual_rating"] == x["actual_rating"] for x in data)  # NaN: not rated by the persona-holder
    agreement = {"weight": reward.agreement_weight, "rated_rows": rated, "scored": len(reward.agreements),
                 "mean": sum(reward.agreements) / len(reward.agreements) if reward.agreements else None}
    return RecipeResult(run, len(data), reward, {"agreement": agreement})


# ------------------------------------------------------------------ EXP3RT rating rationales
def _label_rationales(lake: Lake, ds: str):
    """Rating-conditioned rationales of the training users -> silver.teacher_outputs (task
    exp3rt_rating: the student's own prompt, and reasoning + rating as the target)."""
    from generator.tasks import exp3rt
    from jobs.train.rationales import rationale_examples

    teacher_id, teacher = TS.configured_teacher(lake)
    rows = rationale_examples(lake, teacher, lake.cfg.training.train.max_examples, lake.cfg.training.train.seed)
    return TS.store(lake, exp3rt.rating_task(), teacher_id, [(x["inputs"], x["completion"]) for x in rows], ds)


def _rationale_sft(r: RecipeRun) -> RecipeResult:
    from generator.tasks import exp3rt

    return _stored_sft(r, exp3rt.rating_task(), TS.teacher_id(r.lake), _label_rationales, "exp3rt rationale-sft")


def _whole_targets(tok, task, targets: list[tuple[dict[str, Any], str]]) -> list[dict[str, str]]:
    """SFT rows with the loss on the whole target."""
    return [{"prompt": D.render(tok, task, inputs), "completion": target + tok.eos_token} for inputs, target in targets]


def _stored_sft(r: RecipeRun, task, teacher_id: str, label, what: str, examples=_whole_targets) -> RecipeResult:
    """SFT on the stored targets of `task` by `teacher_id`, labelled first when there are none;
    `examples(tokenizer, task, [(inputs, target)])` makes the SFT rows. For a task with a score,
    the manifest counts the target scores."""
    import json

    from training.sft import run_sft

    stored = TS.stored(r.lake, task, teacher_id)
    if stored.empty:
        stored = label(r.lake, r.ds)
    targets = [(json.loads(t.inputs), t.output_text) for t in stored.itertuples()]
    data = r.limit(examples(r.tokenizer, task, targets), what)
    if not data:
        raise ValueError(f"{what}: no training target was labelled (see the counts logged above); raise "
                         "training.train.max_examples or check the training users in silver.review_split")
    metrics = {}
    if task.score:
        scores = [t.rsplit(":", 1)[1].strip() for _, t in targets]
        metrics["target_scores"] = {k: scores.count(k) for k in sorted(set(scores), key=int)}
    return RecipeResult(run_sft(r.base, data, r.cfg, r.out), len(data), metrics=metrics)


# ------------------------------------------------------------------ SUMFORU anchored suitability
def _label_anchored(lake: Lake, ds: str):
    """Persona extracts of the training users' target products with the suitability their actual
    rating maps to -> silver.teacher_outputs (task sumforu_summary)."""
    from generator.tasks import sumforu
    from jobs.train.suitability import TEACHER_ID, anchored_examples

    rows = anchored_examples(lake, lake.cfg.training.train.max_examples, lake.cfg.training.train.seed)
    return TS.store(lake, sumforu.summary_task(), TEACHER_ID, [(x["inputs"], x["completion"]) for x in rows], ds)


def _anchored_sft(r: RecipeRun) -> RecipeResult:
    from generator.tasks import sumforu
    from jobs.train.suitability import TEACHER_ID, balanced, score_examples

    return _stored_sft(r, sumforu.summary_task(), TEACHER_ID, _label_anchored, "sumforu anchored-sft",
                       lambda tok, task, targets: balanced(score_examples(tok, task, targets)))


# ------------------------------------------------------------------ SUMFORU grounded personas
def _label_personas(lake: Lake, ds: str):
    """The training users' grounded personas -> silver.teacher_outputs (task sumforu_persona)."""
    from generator.tasks import sumforu
    from jobs.train.personas import TEACHER_ID, grounded_examples

    rows = grounded_examples(lake, lake.cfg.training.train.max_examples, lake.cfg.training.train.seed)
    return TS.store(lake, sumforu.persona_task(), TEACHER_ID, [(x["inputs"], x["completion"]) for x in rows], ds)


def _persona_sft(r: RecipeRun) -> RecipeResult:
    from generator.tasks import sumforu
    from jobs.train.personas import TEACHER_ID

    return _stored_sft(r, sumforu.persona_task(), TEACHER_ID, _label_personas, "sumforu persona-sft")


# ------------------------------------------------------------------ RPO curriculum
def _rpo_grpo(r: RecipeRun) -> RecipeResult:
    from generator.tasks import rpo
    from jobs.train.rewards import personalization_reward
    from training.grpo import run_grpo
    from training.rpo import curriculum_rows

    task, tok, t = rpo.task(), r.tokenizer, r.cfg.train
    items = D.rpo_items(r.lake, t.max_examples)
    data = curriculum_rows(items, t.max_steps * t.grad_accum, t.batch_size, t.curriculum_start, t.curriculum_end,
                           lambda it, k: D.render(tok, task, rpo.prepare(it["generic"], it["history"][:k])))
    data = r.limit(data, "rpo")
    reward = personalization_reward(r.lake)
    run = run_grpo(r.base, [{k: v for k, v in x.items() if k != "k"} for x in data], reward, r.cfg, r.out,
                   r.parent, shuffle=False)
    return RecipeResult(run, len(data), reward)


def _recipes(*recipes: Recipe) -> dict[tuple[str, str], Recipe]:
    return {(x.task, x.method): x for x in recipes}


RECIPES: dict[tuple[str, str], Recipe] = _recipes(
    Recipe("relsum", "sft", "relsum", _sft(TS.RELSUM), ("silver.teacher_outputs",), label=_label(TS.RELSUM),
           about="SFT on the teacher's summaries"),
    Recipe("relsum", "grpo", "relsum", _relsum_grpo, ("silver.relsum_pairs", "bronze.judgments"), from_parent=True,
           about="GRPO against the frozen ONNX ranker"),
    Recipe("relsum", "dpo", "relsum", _relsum_dpo, ("silver.relsum_pairs", "bronze.judgments"), from_parent=True,
           about="DPO on best/worst of sampled summaries under the ranker"),
    Recipe("relsum", "best-of-n", "relsum", _relsum_best_of_n, ("silver.relsum_pairs", "bronze.judgments"),
           from_parent=True, about="SFT on the best of N sampled summaries under the ranker, supported by the product text"),
    Recipe("sumforu", "sft", "sumforu_summary", _sft(TS.SUMFORU), ("silver.teacher_outputs",), label=_label(TS.SUMFORU),
           about="SFT on the teacher's persona summaries"),
    Recipe("sumforu", "anchored-sft", "sumforu_summary", _anchored_sft,
           ("silver.teacher_outputs", "silver.review_split", "gold.personas"), label=_label_anchored, scope="score",
           about="the suitability (loss on the score alone) from the persona-holder's actual rating"),
    Recipe("sumforu", "persona-sft", "sumforu_persona", _persona_sft, ("silver.teacher_outputs", "silver.review_split"),
           label=_label_personas, about="SFT on the training users' grounded personas (best of 4, every sentence supported)"),
    Recipe("sumforu", "rlaif", "sumforu_summary", _sumforu_rlaif, ("gold.personas", "silver.review_samples"),
           from_parent=True, about="GRPO with an AI judge's reward"),
    Recipe("exp3rt", "sft", "exp3rt_preferences", _sft(TS.EXP3RT_PREFERENCES), ("silver.teacher_outputs",),
           label=_label(TS.EXP3RT_PREFERENCES), about="distillation of preference extraction"),
    Recipe("exp3rt", "rationale-sft", "exp3rt_rating", _rationale_sft,
           ("silver.teacher_outputs", "silver.review_split", "silver.review_preferences"), label=_label_rationales,
           about="rating prediction: reasoning written given the observed rating, then the rating"),
    Recipe("rpo", "sft", "rpo", _sft(TS.RPO), ("silver.teacher_outputs",), label=_label(TS.RPO),
           about="SFT on the teacher's rewrites"),
    Recipe("rpo", "grpo", "rpo", _rpo_grpo, ("silver.user_histories", "bronze.reviews"), from_parent=True,
           about="GRPO under the 2-to-6-shot history curriculum"),
)
TASKS: tuple[str, ...] = tuple(dict.fromkeys(task for task, _ in RECIPES))
METHODS: tuple[str, ...] = tuple(dict.fromkeys(method for _, method in RECIPES))


def recipe(task: str, method: str) -> Recipe:
    found = RECIPES.get((task, method))
    if found is None:
        have = ", ".join(m for t, m in RECIPES if t == task) or "none"
        raise ValueError(f"task '{task}' has no method '{method}'; it has: {have}")
    return found


def adapter_task(task: str) -> str:
    """The one registry folder of a task's recipes (ReLSum: relsum); an error when they differ."""
    found = {x.adapter_task for (t, _), x in RECIPES.items() if t == task}
    if len(found) != 1:
        raise ValueError(f"task '{task}' registers adapters under {sorted(found)}; name the method")
    return found.pop()
