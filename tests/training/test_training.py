"""Every training method runs a few real steps on the sample data (SmolLM2-135M, LoRA, trl on CPU),
registers an adapter, records its run, and the generation job then loads that adapter."""

import json
import math
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.conftest import SMALL_LAKE, make_lake
from training.rpo import curriculum_rows, k_at

TINY = {
    **SMALL_LAKE,
    "generation__relsum_max_tokens": "16",
    "training__train__max_examples": "3",
    "training__train__batch_size": "1",
    "training__train__num_generations": "2",
    "training__train__max_completion_length": "8",
    "training__train__max_steps": "2",
    "training__train__dpo_candidates": "2",
    "training__train__best_of_n": "4",
    # 8-token summaries of 3 products: the title rule is tested on hand-made text (test_tasks, test_best_of_n);
    # here the recipe's plumbing is, so it must keep something
    "training__train__max_title_share": "1.0",
}


@pytest.fixture(scope="module")
def train_lake(generated_lake, tmp_path_factory, spark):
    from jobs.ranking import train_ranker

    lake0, _ = generated_lake
    root = tmp_path_factory.mktemp("train") / "lake"
    shutil.copytree(lake0.root, root)
    lake = make_lake(root, spark, **TINY)
    train_ranker(lake, max_steps=1)
    return lake


def test_rpo_curriculum_rises_from_2_to_6_shots():
    assert [k_at(s, 5, 2, 6) for s in range(5)] == [2, 3, 4, 5, 6]
    rows = curriculum_rows([{"target": "t", "generic": "g", "history": list("abcdef")}], 3, 2, 2, 6,
                           lambda it, k: ",".join(it["history"][:k]))
    assert [r["k"] for r in rows] == [2, 2, 4, 4, 6, 6] and rows[-1]["prompt"] == "a,b,c,d,e,f"


def test_relsum_sft_then_grpo_dpo_and_best_of_n_register_adapters_that_generation_uses(train_lake):
    from jobs.features import generate
    from jobs.train import train_task
    from training import registry

    lake = train_lake
    sft = train_task(lake, "relsum", "sft", "2024-05-01")
    assert sft.folder.name == "v0001" and (sft.folder / "adapter_model.safetensors").exists()
    teacher = lake.read_pandas("silver.teacher_outputs")
    assert len(teacher) >= 1 and set(teacher.teacher_id) == {"transformers:smollm2-135m-instruct"}
    assert sft.row["loss_first10"] is not None

    grpo = train_task(lake, "relsum", "grpo", "2024-05-01")
    m = registry.manifest(grpo.folder)
    assert m["parent_adapter"].endswith("relsum/v0001") and m["method"] == "grpo"  # RL starts from the SFT adapter
    assert grpo.row["reward_first10"] is not None and grpo.row["reward_first10"] <= 0  # -|r - label|
    assert 0 < grpo.row["reward_share"] < 0.5
    assert (grpo.folder / "curve.png").stat().st_size > 1000

    dpo = train_task(lake, "relsum", "dpo", "2024-05-01")
    assert dpo.folder.name == "v0003" and registry.manifest(dpo.folder)["metrics"]["dpo_pairs"] >= 1

    best = train_task(lake, "relsum", "best-of-n", "2024-05-01")
    m = registry.manifest(best.folder)["metrics"]["best_of_n"]
    assert m["candidates"] == 4 * m["prompts"] and 1 <= m["kept"] == best.row["examples"] <= m["prompts"]
    assert m["reward_kept_mean"] > m["reward_baseline_mean"]  # a kept summary beats the title alone
    assert best.row["loss_first10"] is not None

    runs = lake.read_pandas("eval.training_runs")
    tags = [registry.tag(f) for f in (sft.folder, grpo.folder, dpo.folder, best.folder)]
    assert sorted(runs.run_id) == [f"relsum/{t}" for t in tags] and tags[3].startswith("v0004-")
    assert runs.set_index("run_id").loc[f"relsum/{tags[1]}", "parent_adapter"] == tags[0]
    assert runs.set_index("run_id").loc[f"relsum/{tags[3]}", "parent_adapter"] == tags[2]

    # the newest adapter is what generation loads, and every row records it
    report = generate(lake, "relsum", "2024-05-02")
    assert report.generated + report.failed > 0
    rows = lake.read_pandas("gold.product_summaries")
    assert set(rows[rows.ds == "2024-05-02"].adapter_version) <= {tags[3]}
    assert (rows.ds == "2024-05-02").sum() == report.generated


def test_sumforu_rlaif_exp3rt_sft_and_rpo_sft_then_curriculum(train_lake):
    from jobs.train import train_task
    from training import registry

    lake = train_lake
    rlaif = train_task(lake, "sumforu", "rlaif", "2024-05-01")
    assert registry.manifest(rlaif.folder)["judge_prompt_version"] == "judge-v2"
    assert 0 < rlaif.row["reward_first10"] <= 1  # mean of three 1-10 judge scores / 10
    agreement = registry.manifest(rlaif.folder)["metrics"]["agreement"]
    assert agreement["weight"] == 0.5 and agreement["rated_rows"] <= 3
    assert agreement["scored"] == 0 or 0 <= agreement["mean"] <= 1
    exp3rt = train_task(lake, "exp3rt", "sft", "2024-05-01")
    assert exp3rt.folder.parent.name == "exp3rt_preferences"
    rpo_sft = train_task(lake, "rpo", "sft", "2024-05-01")
    rpo_rl = train_task(lake, "rpo", "grpo", "2024-05-01")
    assert registry.manifest(rpo_rl.folder)["parent_adapter"] == str(rpo_sft.folder)
    assert -1 <= rpo_rl.row["reward_first10"] <= 1  # cosine similarity to the user's own review


def test_exp3rt_rationale_sft_trains_a_rating_student_on_train_reviews_that_generation_loads(train_lake, tmp_path):
    from jobs.features import generate
    from jobs.train import train_task
    from jobs.train.pairs import training_pairs
    from training import registry

    lake = train_lake
    pairs = training_pairs(lake, 3, lake.cfg.training.train.seed)
    targets, context = pairs.targets, [*pairs.history.review_id, *pairs.samples.review_id]
    split = lake.read_pandas("silver.review_split").set_index("review_id")
    evaluated = set(lake.read_pandas("gold.rating_predictions").user_id)
    # targets and their context are train reviews; training users are not the evaluated users
    assert set(split.loc[list(targets.review_id) + context, "split"]) == {"train"}
    assert not set(targets.user_id) & evaluated and len(targets) == 3
    assert not set(targets.review_id) & set(context)  # a target never feeds its own profiles
    t = targets.iloc[0]
    mine = split[(split.user_id == t.user_id) & (split.split == "train")]
    assert pairs.history_of(t).user_n == len(mine) - 1  # the history leaves the target out

    report = train_task(lake, "exp3rt", "rationale-sft", "2024-05-01")
    assert report.folder.parent.name == "exp3rt_rating" and report.row["examples"] >= 1
    stored = lake.read_pandas("silver.teacher_outputs")
    stored = stored[stored.task == "exp3rt_rating"]
    actual = dict(zip(targets.user_id, targets.rating))
    for row in stored.itertuples():  # reasoning, then the observed rating as generation writes it
        assert row.output_text.rsplit("\n", 1)[1] in {f"Rating (1-5): {int(r)}" for r in actual.values()}
    assert sum(registry.manifest(report.folder)["metrics"]["target_scores"].values()) == len(stored)

    made = generate(lake, "ratings", "2024-05-03")
    rows = lake.read_pandas("gold.rating_predictions")
    rows = rows[rows.ds == "2024-05-03"]
    assert made.generated == len(rows) > 0 and set(rows.adapter_version) == {registry.tag(report.folder)}
    assert rows.predicted_rating_expected.between(1, 5).all() and (rows.predicted_rating_entropy >= 0).all()
    assert rows.predicted_rating.between(1, 5).all()  # the median of the distribution

    # shipped adapters install into another registry once (same content hash: not twice)
    shipped = tmp_path / "shipped"
    shutil.copytree(report.folder, shipped / "exp3rt_rating" / "v0001")
    first = registry.install(shipped, tmp_path / "registry")
    again = registry.install(shipped, tmp_path / "registry")
    assert [now for *_, now in first] == [True] and [now for *_, now in again] == [False]
    assert registry.tag(first[0][1]) == registry.tag(report.folder).replace(report.folder.name, "v0001")
    assert registry.manifest(first[0][1])["installed_from"] == "shipped/exp3rt_rating/v0001"  # portable, no machine path


def test_sumforu_anchored_sft_targets_suitability_from_the_actual_rating(train_lake):
    from generator.grounding import claim_sentences
    from jobs.train import train_task
    from jobs.train.pairs import training_pairs
    from jobs.train.suitability import TEACHER_ID
    from training import registry

    lake = train_lake
    report = train_task(lake, "sumforu", "anchored-sft", "2024-05-01")
    assert report.folder.parent.name == "sumforu_summary" and report.row["examples"] >= 1
    stored = lake.read_pandas("silver.teacher_outputs")
    stored = stored[stored.teacher_id == TEACHER_ID]
    targets = training_pairs(lake, 3, lake.cfg.training.train.seed).targets
    allowed = {f"Suitability (1-10): {2 * int(r)}" for r in targets.rating}  # 1-5 stars -> 2-10
    assert len(stored) >= 1 and {t.rsplit("\n", 1)[1] for t in stored.output_text} <= allowed
    for row in stored.itertuples():  # the summary is the product's own review sentences, nothing invented
        summary = row.output_text.rsplit("\n", 1)[0]
        reviews = " ".join(json.loads(row.inputs)["reviews_block"].split())
        sentences = claim_sentences(summary)
        assert 1 <= len(sentences) <= 2 and all(" ".join(x.rstrip(".").split()) in reviews for x in sentences), summary
    assert registry.manifest(report.folder)["recipe"] == "sumforu anchored-sft"
    # trained on the score alone: generation writes the text with the adapter off, reads the score with it on
    assert registry.scope(report.folder) == "score"
    import torch

    from generator.backends import TransformersBackend
    from jobs.train.datasets import base_model

    backend = TransformersBackend(base_model(lake), "smollm2", str(report.folder), registry.tag(report.folder),
                                  threads=1, dtype="float32", adapter_scope="score")
    ids = backend.tokenizer("Suitability (1-10):", return_tensors="pt")
    with torch.inference_mode():
        scored = backend.model(**ids).logits
        with backend._text_adapter():
            text = backend.model(**ids).logits
            with backend.model.disable_adapter():
                base = backend.model(**ids).logits
    assert torch.equal(text, base) and not torch.equal(scored, base)


def test_validation_rows_are_neither_trained_on_nor_evaluated(train_lake):
    from jobs.train.datasets import load_tokenizer, relsum_rows
    from jobs.train.pairs import training_pairs

    lake, tok = train_lake, load_tokenizer(train_lake)
    n, seed = lake.cfg.training.train.max_examples, lake.cfg.training.train.seed
    trained = relsum_rows(lake, tok, n)
    validation = relsum_rows(lake, tok, 50, part="validation")
    heldout = relsum_rows(lake, tok, 50, part="heldout")
    assert trained and validation and heldout
    # validation pairs are of other products than the trained ones (their prompts hold title and description) ...
    assert not {r["prompt"] for r in validation} & {r["prompt"] for r in trained}
    # ... and of the ranker's training queries, never of its held-out (evaluation) queries
    assert not {r["query"] for r in validation} & {r["query"] for r in heldout}
    with pytest.raises(ValueError, match="part must be one of"):
        relsum_rows(lake, tok, 1, part="test")

    first = training_pairs(lake, n, seed).targets
    after = training_pairs(lake, 2, seed, skip=n).targets
    evaluated = set(lake.read_pandas("gold.rating_predictions").user_id)
    assert len(after) == 2 and not set(after.user_id) & (set(first.user_id) | evaluated)
    assert list(training_pairs(lake, n + 2, seed).targets.user_id) == [*first.user_id, *after.user_id]


def test_promotion_follows_the_metric_direction_and_never_promotes_on_nan():
    from jobs.train.validation import RATING_MAE, RELSUM_REWARD, SUITABILITY_SPEARMAN, Validation

    assert RELSUM_REWARD.better(-0.3, -0.4, 0.0) and not RELSUM_REWARD.better(-0.4, -0.3, 0.0)
    assert not RELSUM_REWARD.better(-0.35, -0.4, 0.1)  # not by more than the margin
    assert RATING_MAE.better(0.3, 0.5, 0.0) and not RATING_MAE.better(0.5, 0.3, 0.0)
    nan = float("nan")
    assert not SUITABILITY_SPEARMAN.better(nan, 0.1, 0.0) and not SUITABILITY_SPEARMAN.better(nan, nan, 0.0)
    assert SUITABILITY_SPEARMAN.better(0.2, nan, 0.0)  # a measurable candidate beats an unmeasurable current one
    with pytest.raises(ValueError, match="validation_"):
        Validation("heldout_mae", False, RATING_MAE.measure, "an evaluation metric is not a validation metric")


def test_sumforu_score_examples_put_the_loss_on_the_score_where_the_daily_job_reads_it():
    from generator.backends import render_prompt
    from generator.tasks import sumforu
    from generator.tasks.base import _with_score
    from jobs.train.suitability import score_examples

    class Tok:  # the chat template's shape; the real tokenizer renders the same way (render_prompt)
        eos_token = "<eos>"

        def apply_chat_template(self, messages, tokenize, **kw):
            return "|".join(f"{m['role']}:{m['content']}" for m in messages)

    class ScoreOnly:  # a backend that records the prompt each score is read from
        def score(self, prompts, choices):
            self.prompts = prompts
            return [type("D", (), {"pick": lambda self, reading: "6"})() for _ in prompts]

    task = sumforu.summary_task()
    inputs = {"persona": "Likes mild soap.", "persona_block": '"""Likes mild soap."""', "rating_history": "none", "reviews_block": '"""- (5/5) mild"""'}
    [row] = score_examples(Tok(), task, [(inputs, sumforu.suitability_target("Mild and gentle.", 3.0))])
    assert row["completion"] == " 6<eos>"
    backend = ScoreOnly()
    _with_score(backend, task, [inputs], ["Mild and gentle.\nSuitability: 9"])
    assert row["prompt"] == render_prompt(Tok(), backend.prompts[0])  # trained exactly where it is read
    with pytest.raises(ValueError, match="no 'Suitability"):
        score_examples(Tok(), task, [(inputs, "a summary without a score")])


def test_rlaif_reward_mixes_in_agreement_with_the_actual_rating_where_there_is_one():
    from training.rewards import JudgeReward, agreement

    assert agreement("Mild.\nSuitability (1-10): 8", 4.0) == 1.0
    assert agreement("Mild. Suitability: 10", 1.0) == pytest.approx(1 / 9)  # 2 x 1 star = 2: 8 points away
    assert agreement("Mild.", 5.0) == 0.0 and agreement("Suitability: 0", 5.0) == 0.0  # no score from 1 to 10
    assert agreement("Suitability 3 ... Suitability (1-10): 7", 3.0) == pytest.approx(1 - 1 / 9)  # the last one counts

    class Judge:  # every criterion's expected score is 6
        def score(self, prompts, choices):
            return [type("D", (), {"expected": 6.0})() for _ in prompts]

    reward = JudgeReward(Judge(), agreement_weight=0.5)
    completions = ["Mild soap.\nSuitability (1-10): 10", "Mild soap.\nSuitability (1-10): 10", "Mild soap."]
    out = reward(["p"] * 3, completions, ["persona"] * 3, ["reviews"] * 3, actual_rating=[5.0, 1.0, float("nan")])
    assert out == pytest.approx([0.5 * 0.6 + 0.5 * 1.0, 0.5 * 0.6 + 0.5 / 9, 0.6])
    assert reward.agreements == pytest.approx([1.0, 1 / 9])
    assert JudgeReward(Judge())(["p"], completions[:1], ["x"], ["y"], actual_rating=[1.0]) == pytest.approx([0.6])
    with pytest.raises(ValueError, match="agreement_weight"):
        JudgeReward(Judge(), agreement_weight=1.5)


def test_balanced_repeats_rare_scores_up_to_a_cap():
    from jobs.train.suitability import balanced

    rows = [{"completion": " 10", "i": i} for i in range(40)] + [{"completion": " 8", "i": 0}, {"completion": " 8", "i": 1}]
    rows += [{"completion": " 2", "i": 0}]
    out = balanced(rows, min_share=0.25, max_copies=6)
    counts = {c: sum(r["completion"] == c for r in out) for c in (" 10", " 8", " 2")}
    assert counts == {" 10": 40, " 8": 10, " 2": 6}  # 10 wanted: 8 has 5 copies of each row; 2 is capped at 6
    assert out[: len(rows)] == rows and balanced([]) == []


def test_sumforu_persona_sft_learns_only_grounded_personas(train_lake):
    from generator.grounding import ground
    from generator.tasks import sumforu
    from jobs.train import train_task
    from jobs.train.personas import TEACHER_ID
    from training import registry

    lake = train_lake
    report = train_task(lake, "sumforu", "persona-sft", "2024-05-01")
    assert report.folder.parent.name == "sumforu_persona"
    stored = lake.read_pandas("silver.teacher_outputs")
    stored = stored[stored.teacher_id == TEACHER_ID]
    assert set(stored.task) <= {"sumforu_persona"} and set(stored.prompt_version) <= {sumforu.persona_task().prompt_version}
    for row in stored.itertuples():  # every sentence of every target is supported by that user's reviews
        check = ground(row.output_text, json.loads(row.inputs)["evidence"])
        assert check.claims and check.supported == len(check.claims), row.output_text
    manifest = registry.manifest(report.folder)
    assert manifest["recipe"] == "sumforu persona-sft" and manifest["examples"] == len(stored)
    assert "target_scores" not in manifest["metrics"]  # a persona has no score


def test_merge_writes_a_full_model_that_loads(train_lake, tmp_path):
    from transformers import AutoModelForCausalLM

    from training import registry

    from generator.models import resolve

    folder = registry.latest(train_lake.cfg.adapters_dir, "relsum")
    manifest = registry.manifest(folder)
    # portable references, not this machine's paths (the registry name resolves anywhere)
    assert manifest["base_model"] == "smollm2-135m-instruct"
    assert manifest["base_model_hub_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    out = registry.merge(folder, resolve(manifest["base_model"], train_lake.cfg.cache_dir), tmp_path / "merged")
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.num_parameters() == 134_515_008  # LoRA folded in: the base architecture, no adapter layers


class _FakeOpenAI(BaseHTTPRequestHandler):
    seen_auth: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeOpenAI.seen_auth.append(self.headers.get("Authorization"))
        last = body["messages"][-1]["content"]
        text = "7" if last.endswith(":") else "Compact steel travel mug that keeps drinks hot for hours."
        choice = {"message": {"content": text}}
        if body.get("logprobs"):  # OpenAI's shape: the first token's top alternatives
            top = [{"token": "7", "logprob": math.log(0.6)}, {"token": " 8", "logprob": math.log(0.3)},
                   {"token": "seven", "logprob": math.log(0.1)}]
            choice["logprobs"] = {"content": [{"token": "7", "logprob": math.log(0.6), "top_logprobs": top}]}
        data = json.dumps({"choices": [choice], "usage": {"completion_tokens": 9, "prompt_tokens": 40}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args):
        pass


def test_http_teacher_labels_through_an_openai_compatible_endpoint_mocked_locally(monkeypatch):
    """A local HTTP server stands in for the remote endpoint (none is reachable from this machine)."""
    from generator.tasks import relsum
    from training.teacher import label, load_teacher, parse_teacher

    server = HTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MY_KEY", "secret-123")
        spec = parse_teacher(f"http://127.0.0.1:{server.server_port}/v1|big-teacher", "unused")
        backend = load_teacher(spec, "MY_KEY")
        assert "secret-123" not in repr(backend)
        out = label(backend, relsum.task(), [relsum.prepare("Travel mug", "Steel mug, 400 ml, keeps drinks hot.")])
        assert out[0]["value"]["summary"].startswith("Compact steel") and spec.teacher_id.startswith("http:big-teacher@")
        dist, = backend.score([[{"role": "user", "content": "Score:"}]], [str(i) for i in range(1, 11)])
        # 0.6 and 0.3 renormalised over the tokens that are a choice ("seven" is not)
        assert dist.probs["7"] == pytest.approx(2 / 3) and dist.probs["8"] == pytest.approx(1 / 3)
        assert dist.expected == pytest.approx(7 + 1 / 3) and dist.rounded == "7"
        assert _FakeOpenAI.seen_auth[0] == "Bearer secret-123"
    finally:
        server.shutdown()


def _redirecting_to(target: str):
    class Redirect(BaseHTTPRequestHandler):
        seen_auth: list = []

        def do_POST(self):  # noqa: N802
            Redirect.seen_auth.append((self.path, self.headers.get("Authorization")))
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(307)  # keeps the method and body
            self.send_header("Location", target if self.path.startswith("/v1/") else "/v1/chat/completions")
            self.end_headers()

        def log_message(self, *args):
            pass

    return Redirect


def test_teacher_key_never_follows_a_redirect_to_another_host_nor_goes_out_over_plain_http(monkeypatch):
    """Two real servers on loopback: 127.0.0.1 redirects (same origin first, then) to `localhost`,
    another origin, which must not see the key."""
    from generator.backends import OpenAICompatBackend
    from generator.tasks import relsum
    from precis.errors import ConfigError
    from training.teacher import label

    monkeypatch.setenv("MY_KEY", "secret-123")
    target = HTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    redirect = _redirecting_to(f"http://localhost:{target.server_port}/v1/chat/completions")
    source = HTTPServer(("127.0.0.1", 0), redirect)
    for server in (target, source):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _FakeOpenAI.seen_auth.clear()
        backend = OpenAICompatBackend(f"http://127.0.0.1:{source.server_port}/old", "big-teacher", "MY_KEY")
        out = label(backend, relsum.task(), [relsum.prepare("Travel mug", "Steel mug, 400 ml.")], attempts=1)
        assert out and out[0]["value"]["summary"].startswith("Compact steel")
        # /old -> /v1/... on the same origin keeps the key; the hop to localhost drops it
        assert redirect.seen_auth == [("/old/chat/completions", "Bearer secret-123"), ("/v1/chat/completions", "Bearer secret-123")]
        assert _FakeOpenAI.seen_auth == [None]
    finally:
        target.shutdown()
        source.shutdown()
    plain = OpenAICompatBackend("http://teacher.example.com/v1", "big-teacher", "MY_KEY")
    with pytest.raises(ConfigError, match="over http.*https://"):
        plain.generate([[{"role": "user", "content": "hi"}]], relsum.task().params)


def test_endpoint_credentials_stay_out_of_ids_logs_and_adapter_json():
    from training.config import TrainingConfig
    from training.teacher import parse_teacher

    url = "https://alice:s3cret@llm.example.com/v1?api_key=s3cret2|big-teacher"
    spec = parse_teacher(url, "unused")
    assert spec.teacher_id == "http:big-teacher@https://***@llm.example.com/v1?api_key=***"
    dumped = json.dumps(TrainingConfig(teacher=url, judge=url).public_dump())
    assert "s3cret" not in dumped and "alice" not in dumped and "llm.example.com/v1" in dumped


def test_prompt_limit_drops_long_prompts_and_refuses_to_drop_all():
    from jobs.train.datasets import within_prompt_limit as _within_prompt_limit

    rows = [{"prompt": "x" * 50}, {"prompt": "y" * 500}]
    assert _within_prompt_limit(rows, 100, "relsum") == [{"prompt": "x" * 50}]
    with pytest.raises(ValueError, match="max_prompt_chars=10; raise it"):
        _within_prompt_limit(rows, 10, "relsum")


def test_bf16_follows_config_and_the_cpu():
    import torch

    from training.common import trl_args, use_bf16
    from training.config import TrainingConfig

    cfg = TrainingConfig()
    cfg.train.use_cpu = True
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert use_bf16(cfg) is native  # auto: bf16 autocast only where the CPU has bf16 instructions
    cfg.train.bf16 = False
    args = trl_args(cfg, __import__("pathlib").Path("/tmp/x"))
    assert args["bf16"] is False and args["gradient_checkpointing"] is False  # trl's default is True
    cfg.train.bf16 = True
    assert use_bf16(cfg) is True


def test_report_to_tensorboard_writes_the_loss_curve(tmp_path):
    from generator.models import SMOLLM2, resolve
    from jobs.config import load_config
    from training.config import TrainingConfig
    from training.sft import run_sft

    cfg = TrainingConfig()
    cfg.train.max_steps, cfg.train.batch_size, cfg.train.report_to = 2, 2, "tensorboard"
    base = resolve(SMOLLM2, load_config(None, environ={}).cache_dir)
    examples = [{"prompt": f"Name colour {i}:", "completion": f" colour {i} is blue.<|im_end|>"} for i in range(4)]
    run = run_sft(str(base), examples, cfg, tmp_path / "adapter")
    assert len(run.series("loss")) == 2
    events = list((tmp_path / "adapter" / "trainer").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file under the run folder"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent)).Reload()
    assert len(acc.Scalars("train/loss")) == 2


def test_report_to_a_missing_tracker_fails_before_loading_the_model():
    import importlib.util

    from training.common import report_to
    from training.config import TrainingConfig

    cfg = TrainingConfig()
    cfg.train.report_to = "mlflow"
    if importlib.util.find_spec("mlflow") is None:
        with pytest.raises(RuntimeError, match="needs the mlflow package: pip install mlflow"):
            report_to(cfg)
    else:
        assert report_to(cfg) == ["mlflow"]
    cfg.train.report_to = "none"
    assert report_to(cfg) == []


def test_a_run_stopped_by_its_time_budget_checkpoints_and_the_next_one_resumes(tmp_path):
    """What lets a GPU run continue across 10-minute commands (training.gpu_run): max_seconds stops
    with a checkpoint, and the same run folder resumes from it instead of starting over."""
    from generator.models import SMOLLM2, resolve
    from jobs.config import load_config
    from training.common import last_checkpoint
    from training.config import TrainingConfig
    from training.sft import run_sft

    cfg = TrainingConfig()
    cfg.train.max_steps, cfg.train.batch_size, cfg.train.checkpoint_steps = 3, 2, 2
    cfg.train.max_seconds = 0.001  # spent within the first step
    base = resolve(SMOLLM2, load_config(None, environ={}).cache_dir)
    examples = [{"prompt": f"Name colour {i}:", "completion": f" colour {i} is blue.<|im_end|>"} for i in range(4)]
    first = run_sft(str(base), examples, cfg, tmp_path / "run")
    assert first.stopped_early and [s for s, _ in first.series("loss")] == [1]
    assert last_checkpoint(tmp_path / "run").endswith("checkpoint-1")  # saved on stopping, not only every 2 steps
    cfg.train.max_seconds = None
    second = run_sft(str(base), examples, cfg, tmp_path / "run")
    assert second.resumed_from.endswith("checkpoint-1") and not second.stopped_early
    assert [s for s, _ in second.series("loss")] == [2, 3]
