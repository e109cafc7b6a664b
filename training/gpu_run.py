"""The GPU runbook's device side: what one call on a lent GPU machine runs over a GPU pack.

    python3 -m training.gpu_run .gpupack --out "$OUT" [--profile full|tiny] [--budget-s 480]

It imports only `training/`, `generator/` and `ranker/` (no Spark, no Delta: the device has
neither) and, in order, each stage's figures written to `<out>/results.json` as soon as it ends,
so a command stopped at its limit still returns what it measured:

1. **assemble**: join and sha256-check the pack's files (`training.gpu_pack`); install the wheels
   the device lacks (trl, datasets, gguf, ...) into a folder on `sys.path`; dequantise the GGUF
   base model as `precis models pull` does on the CPU, with the CPU's tokenizer and config files,
   and compare the weights with the CPU's fingerprint (`model_parity`), so both run one model;
2. **parity**: the ranker in PyTorch on the GPU (`ranker.torch_scorer`) against the ONNX scorer's
   scores of the same pairs, written at pack time;
3. **throughput**: greedy ReLSum generation with the transformers backend (bf16) at each batch
   size: completion tokens/s, beside the CPU figure measured at pack time, and as a share of the
   memory-bandwidth roofline (a decode step at batch B reads every weight once for B tokens; the
   bandwidth is measured here with a device-to-device copy);
4. **grpo**: ReLSum GRPO with trl against the GPU reward (`training.grpo.run_grpo`), from the
   pack's parent adapter when it carries one (as the relsum GRPO recipe does), checkpointing
   every `checkpoint_steps` into `<pack>/work/run-<profile>/` and stopping in time for stage 5; a
   second command on the same warm machine resumes from the newest checkpoint;
5. **summaries**: every held-out product summarised with the base model, the pack's parent adapter
   (today's, if any) and the new adapter (`generator.tasks.run_task`, the daily job's own parser
   and retries), with each summary's support and title share; and the held-out mean reward
   -|r(q, title | summary) - gain| of each on the held-out queries' judged pairs.

What comes back under `--out`: results.json, summaries.jsonl, adapter/ (the LoRA files) and run.log,
which `precis gpu import` reads.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training import gpu_pack

log = logging.getLogger("precis.gpu_run")

SITE = Path("/tmp/precis-gpu-site")  # where the carried wheels are installed on the device


@dataclass(frozen=True)
class Profile:
    """How much one run does. `full` is sized for one 10-minute command on an H100/H200; `tiny` runs
    the same code on a CPU in the test suite."""

    name: str
    batch_sizes: tuple[int, ...]  # throughput: generation batch sizes measured
    throughput_tokens: int  # throughput: max_new_tokens per completion
    grpo_steps: int  # GRPO: optimisation steps (a run may stop early on time and resume)
    grpo_prompts: int  # GRPO: prompts per step
    grpo_generations: int  # GRPO: completions per prompt (the group)
    grpo_completion_tokens: int | None  # GRPO: tokens per completion (None: the pack's ReLSum cap)
    grpo_bf16: bool  # GRPO: bf16 autocast (off: on an H200, trl 1.16 / transformers 5.17 / torch 2.11 sampling hit a
    # device-side assert under it; float32 ran)
    learning_rate: float
    lora_r: int
    checkpoint_steps: int
    products: int | None  # summaries: held-out products summarised (None: all)
    summary_batch: int  # summaries: generation batch size
    reserve_s: float  # seconds kept after GRPO for the summaries and the held-out reward

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"profile {self.name}: batch_sizes must be positive")
        if self.grpo_generations < 2:
            raise ValueError(f"profile {self.name}: GRPO needs at least 2 generations per prompt")


FULL = Profile("full", (1, 4, 16, 64, 256), 48, grpo_steps=200, grpo_prompts=8, grpo_generations=8,
               grpo_completion_tokens=None, grpo_bf16=False, learning_rate=1e-4, lora_r=16, checkpoint_steps=25, products=None,
               summary_batch=128, reserve_s=80)
TINY = Profile("tiny", (1, 2), 8, grpo_steps=2, grpo_prompts=2, grpo_generations=2, grpo_completion_tokens=8,
               grpo_bf16=False, learning_rate=1e-4, lora_r=4, checkpoint_steps=1, products=4, summary_batch=4, reserve_s=0)
PROFILES = {p.name: p for p in (FULL, TINY)}


class Results:
    """results.json under `out`, rewritten after every stage."""

    def __init__(self, out: Path):
        self.path = out / "results.json"
        self.data: dict[str, Any] = {"stages": {}}

    def stage(self, name: str, value: Any, seconds: float) -> None:
        self.data["stages"][name] = {"seconds": round(seconds, 2), **(value if isinstance(value, dict) else {"value": value})}
        self.save()

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=1, default=str))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def ensure_wheels(folder: Path) -> list[str]:
    """Install the carried wheels when trl is not importable here, into `SITE` (put on sys.path)."""
    if importlib.util.find_spec("trl") is not None:
        return []
    wheels = sorted(str(w) for w in folder.glob("*.whl")) if folder.is_dir() else []
    if not wheels:
        raise RuntimeError(f"trl is not installed here and the pack carries no wheels under {folder}: pack without --no-wheels")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", str(SITE), *wheels], check=True)
    sys.path.insert(0, str(SITE))
    importlib.invalidate_caches()
    return [Path(w).name for w in wheels]


def dequantize(gguf: Path, hf: Path, out: Path) -> Path:
    """The base model as a transformers folder: the GGUF dequantised once (as generator.models does
    on the CPU), with the CPU cache's config and tokenizer files (`hf`) put over what this
    transformers derives from the GGUF."""
    if (out / "config.json").exists():
        return out
    import shutil

    from transformers import AutoModelForCausalLM, GgufConfig

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 quantization_config=GgufConfig(dequantize=True))
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    for f in hf.iterdir():
        shutil.copy2(f, tmp / f.name)
    tmp.rename(out)
    return out


def weights_fingerprint(path: Path) -> dict[str, list[float]]:
    """Per tensor of a safetensors file, (sum, sum of squares) in float64: cheap to carry, and
    enough to tell whether two machines load the very same weights."""
    from safetensors.torch import load_file

    return {name: [float(t.double().sum()), float(t.double().square().sum())]
            for name, t in sorted(load_file(str(path)).items())}


def model_parity(model_dir: Path, want: dict[str, list[float]]) -> dict[str, Any]:
    """The dequantised weights against the CPU cache's fingerprint (`jobs.gpu.pack` records it)."""
    got = weights_fingerprint(model_dir / "model.safetensors")
    common = sorted(set(got) & set(want))
    worst = max((abs(got[n][i] - want[n][i]) / max(1e-12, abs(want[n][i])) for n in common for i in (0, 1)), default=None)
    return {"tensors": len(common), "missing": sorted(set(want) - set(got))[:5], "max_rel_diff": worst}


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def copy_bandwidth(device: str) -> float | None:
    """Bytes per second of a device-to-device copy (read + write counted), the roofline's ceiling."""
    import torch

    if device != "cuda":
        return None
    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    del x, y
    return 2 * 10 * (1 << 30) / seconds


def parity(scorer, rows: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    got = scorer.score([r["query"] for r in rows], [r["text"] for r in rows])
    want = np.array([r["onnx_score"] for r in rows], dtype=np.float64)
    diff = np.abs(got - want)
    return {"pairs": len(rows), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "within_1e-3": float((diff <= 1e-3).mean())}


def relsum_inputs(products: list[dict[str, Any]], max_tokens: int) -> list[dict[str, Any]]:
    from generator.tasks import relsum

    return [relsum.prepare(p["title"], p["description"], max_tokens) for p in products]


def throughput(model_dir: Path, model_id: str, inputs: list[dict[str, Any]], profile: Profile, device: str,
               bandwidth: float | None) -> dict[str, Any]:
    import torch

    from generator.backends import SamplingParams, TransformersBackend
    from generator.tasks import relsum

    task = relsum.task()
    backend = TransformersBackend(str(model_dir), model_id, batch_size=1, device=device)
    params_n = sum(p.numel() for p in backend.model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in backend.model.parameters())
    sampling = SamplingParams(max_new_tokens=profile.throughput_tokens)
    rows = []
    for b in profile.batch_sizes:
        n = min(len(inputs), max(b, 8))  # at least 8 prompts, so batch 1 is timed over several
        prompts = [task.messages(x) for x in inputs[:n]]
        backend.batch_size = b
        backend.generate(prompts[:b], sampling)  # warm-up: kernels, allocator
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        gens = backend.generate(prompts, sampling)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        tokens = sum(g.completion_tokens for g in gens)
        row = {"batch": b, "prompts": n, "completion_tokens": tokens, "seconds": round(seconds, 3),
               "tokens_per_s": round(tokens / seconds, 1)}
        if bandwidth:
            roofline = b * (bandwidth / 2) / weight_bytes  # tokens/s if each step only read the weights once
            row["roofline_tokens_per_s"] = round(roofline, 1)
            row["roofline_share"] = round(tokens / seconds / roofline, 4)
        rows.append(row)
        log.info("throughput: batch %d: %.0f tokens/s", b, row["tokens_per_s"])
    out = {"dtype": str(next(backend.model.parameters()).dtype), "parameters": params_n, "weight_bytes": weight_bytes,
           "max_new_tokens": profile.throughput_tokens, "rows": rows}
    if device == "cuda":
        out["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / (1 << 30), 2)
    del backend
    return out


def grpo(model_dir: Path, rows: list[dict[str, Any]], scorer, meta: dict[str, Any], profile: Profile, run_dir: Path,
         seconds: float, parent: Path | None) -> dict[str, Any]:
    """Train (or resume) the ReLSum GRPO adapter into `run_dir`, from the `parent` adapter when the
    pack carries one; the reward curve accumulates in `run_dir/curve.jsonl` across resumed commands."""
    from generator.backends import render_prompt
    from generator.tasks import relsum
    from training.config import LoraSettings, TrainingConfig, TrainSettings
    from training.grpo import run_grpo
    from training.rewards import RelsumReward
    from transformers import AutoTokenizer

    state = run_dir / "state.json"
    if state.exists() and json.loads(state.read_text()).get("complete"):
        log.info("grpo: %s already complete; nothing to train", run_dir)
        return json.loads(state.read_text())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    task = relsum.task(meta["relsum"]["max_tokens"])
    data = [{"prompt": render_prompt(tokenizer, task.messages(r["inputs"])), "query": r["query"], "title": r["title"],
             "gain": r["gain"], "max_words": r["inputs"]["max_words"]} for r in rows]
    cfg = TrainingConfig(
        lora=LoraSettings(r=profile.lora_r, alpha=2 * profile.lora_r),
        train=TrainSettings(max_steps=profile.grpo_steps, learning_rate=profile.learning_rate, batch_size=profile.grpo_prompts,
                            num_generations=profile.grpo_generations,
                            max_completion_length=profile.grpo_completion_tokens or meta["relsum"]["max_tokens"],
                            length_penalty=meta["relsum"]["length_penalty"], checkpoint_steps=profile.checkpoint_steps,
                            max_seconds=max(1.0, seconds), max_examples=len(data),
                            bf16=profile.grpo_bf16))
    reward = RelsumReward(scorer.score, cfg.train.length_penalty)
    run = run_grpo(str(model_dir), data, reward, cfg, run_dir, parent_adapter=parent)
    with (run_dir / "curve.jsonl").open("a") as f:
        for s in run.steps:
            f.write(json.dumps(s) + "\n")
    curve = [s for s in read_jsonl(run_dir / "curve.jsonl") if "reward" in s]
    steps = int(max((s["step"] for s in curve), default=0))
    rewards = [s["reward"] for s in curve]
    k = min(10, max(1, len(rewards) // 2)) if rewards else 0
    out = {"complete": steps >= profile.grpo_steps and not run.stopped_early, "steps": steps, "target_steps": profile.grpo_steps,
           "resumed_from": run.resumed_from, "seconds_this_command": round(run.seconds, 1),
           "seconds_per_step": round(run.seconds / max(1, len(run.steps)), 3),
           "reward_first": sum(rewards[:k]) / k if k else None, "reward_last": sum(rewards[-k:]) / k if k else None,
           "curve": [[int(s["step"]), round(s["reward"], 5)] for s in curve], "reward_seconds": round(reward.stats.seconds, 1),
           "config": cfg.model_dump(), "train_rows": len(data), "parent": str(parent) if parent else None}
    state.write_text(json.dumps(out, default=str))
    return out


def summarise(model_dir: Path, model_id: str, variant: str, adapter: Path | None, products: list[dict[str, Any]],
              max_tokens: int, batch: int, device: str) -> list[dict[str, Any]]:
    from generator.backends import TransformersBackend
    from generator.tasks import relsum
    from generator.tasks.base import run_task

    task = relsum.task(max_tokens)
    backend = TransformersBackend(str(model_dir), model_id, str(adapter) if adapter else None, batch_size=batch, device=device)
    inputs = relsum_inputs(products, max_tokens)
    results = run_task(backend, task, inputs)
    out = []
    for p, x, r in zip(products, inputs, results):
        summary = (r.value or {}).get("summary")
        out.append({"product_id": p["product_id"], "variant": variant, "summary": summary, "status": r.status,
                    "reason": r.reason, "attempts": r.attempts, "prompt_version": task.prompt_version,
                    "support": relsum.support(summary, x) if summary else None,
                    "title_share": relsum.title_share(summary, x) if summary else None})
    return out


def heldout_reward(scorer, pairs: list[dict[str, Any]], summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean -|r(q, title | summary) - gain| per variant, on the pairs whose product every variant summarised."""
    import numpy as np

    from ranker.texts import product_text

    by = {}
    for s in summaries:
        if s["summary"]:
            by.setdefault(s["variant"], {})[s["product_id"]] = s["summary"]
    if not by:
        return {"pairs": 0}
    common = set.intersection(*(set(v) for v in by.values()))
    rows = [p for p in pairs if p["product_id"] in common]
    out: dict[str, Any] = {"pairs": len(rows), "queries": len({p["query_id"] for p in rows})}
    if not rows:
        return out
    gains = np.array([p["gain"] for p in rows], dtype=float)
    for variant, text in sorted(by.items()):
        scores = scorer.score([p["query"] for p in rows], [product_text(p["title"], text[p["product_id"]]) for p in rows])
        out[variant] = float(-np.abs(scores - gains).mean())
    scores = scorer.score([p["query"] for p in rows], [product_text(p["title"]) for p in rows])
    out["title_only"] = float(-np.abs(scores - gains).mean())
    return out


SKIPPABLE = ("throughput", "summaries")


def run(pack: Path, out: Path, profile: Profile, budget_s: float, device: str = "auto", skip: tuple[str, ...] = ()
        ) -> dict[str, Any]:
    """The stages above, in order; `skip` leaves out any of SKIPPABLE (a first command that only
    trains, say, so that its whole budget goes to GRPO; the second resumes and summarises)."""
    started = time.monotonic()
    deadline = started + budget_s
    out.mkdir(parents=True, exist_ok=True)
    results = Results(out)
    t = time.monotonic()
    work, manifest = gpu_pack.assemble(pack)
    meta = manifest["meta"]
    installed = ensure_wheels(work / "wheels")
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    model_dir = dequantize(work / "model" / meta["model"]["gguf"], work / "model" / "hf", work / "model-hf")
    results.data.update({"profile": asdict(profile), "device": device_name(), "torch": torch.__version__,
                         "transformers": importlib.import_module("transformers").__version__,
                         "trl": importlib.import_module("trl").__version__, "pack": meta})
    results.stage("assemble", {"files": len(manifest["files"]), "wheels_installed": installed}, time.monotonic() - t)

    def stage(name, fn):
        t0 = time.monotonic()
        try:
            value = fn()
        except Exception as e:  # one stage's failure must not cost the others' figures
            log.error("stage %s failed: %s", name, e)
            results.stage(name, {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]},
                          time.monotonic() - t0)
            return None
        results.stage(name, value, time.monotonic() - t0)
        log.info("stage %s done in %.1f s", name, time.monotonic() - t0)
        return value

    from ranker.torch_scorer import TorchScorer

    stage("model_parity", lambda: model_parity(model_dir, meta["model"]["fingerprint"]))
    scorer = TorchScorer(work / "ranker", device=device, max_length=meta["ranker"]["max_length"])  # as the ONNX scorer truncates
    stage("parity", lambda: parity(scorer, read_jsonl(work / "data" / "parity.jsonl")))
    products = read_jsonl(work / "data" / "heldout_products.jsonl")[: profile.products]
    max_tokens = meta["relsum"]["max_tokens"]
    bandwidth = copy_bandwidth(device)
    results.data["copy_bandwidth_bytes_per_s"] = bandwidth
    cycled = (products * max(profile.batch_sizes))[: max(len(products), max(profile.batch_sizes))]
    tp = None
    if "throughput" not in skip:
        tp = stage("throughput", lambda: throughput(model_dir, meta["model"]["id"], relsum_inputs(cycled, max_tokens),
                                                     profile, device, bandwidth))
    if tp and meta.get("cpu_throughput"):
        cpu = meta["cpu_throughput"]
        same = next((r for r in tp["rows"] if r["batch"] == cpu["batch"]), None)
        results.data["stages"]["throughput"]["cpu"] = cpu
        if same:
            results.data["stages"]["throughput"]["speedup_at_cpu_batch"] = round(same["tokens_per_s"] / cpu["tokens_per_s"], 1)
        results.save()
    run_dir = work / f"run-{profile.name}"
    seconds = deadline - time.monotonic() - (0 if "summaries" in skip else profile.reserve_s)
    parent = work / "adapters" / "parent" if (work / "adapters" / "parent").is_dir() else None
    g = stage("grpo", lambda: grpo(model_dir, read_jsonl(work / "data" / "train.jsonl"), scorer, meta, profile, run_dir,
                                   seconds, parent))
    adapter = run_dir if (run_dir / "adapter_model.safetensors").exists() else None
    if adapter:
        (out / "adapter").mkdir(exist_ok=True)
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            (out / "adapter" / name).write_bytes((adapter / name).read_bytes())
    summaries: list[dict[str, Any]] = []

    def every_variant():
        variants = {"base": None, "parent": parent, "adapter": adapter}
        for variant, folder in variants.items():
            if variant == "base" or folder is not None:
                summaries.extend(summarise(model_dir, meta["model"]["id"], variant, folder, products, max_tokens,
                                           profile.summary_batch, device))
        with (out / "summaries.jsonl").open("w") as f:
            for s in summaries:
                f.write(json.dumps(s) + "\n")
        by = {}
        for v in variants:
            mine = [s for s in summaries if s["variant"] == v]
            ok = [s for s in mine if s["status"] == "ok"]
            if mine:
                by[v] = {"products": len(mine), "ok": len(ok),
                         "support_mean": sum(s["support"] for s in ok) / len(ok) if ok else None,
                         "title_share_mean": sum(s["title_share"] for s in ok) / len(ok) if ok else None}
        return by

    if "summaries" not in skip:
        stage("summaries", every_variant)
        stage("heldout_reward", lambda: heldout_reward(scorer, read_jsonl(work / "data" / "heldout_pairs.jsonl"), summaries))
    results.data["grpo_complete"] = bool(g and g.get("complete"))
    results.data["seconds"] = round(time.monotonic() - started, 1)
    results.save()
    return results.data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m training.gpu_run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pack", type=Path, help="the pack folder (its parcels carried, one per call)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-out")), help="results folder (default $OUT)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="full", help="full (a GPU) or tiny (the CPU test)")
    p.add_argument("--budget-s", type=float, default=480, help="wall seconds this command may take (GRPO stops in time)")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--skip", action="append", default=[], choices=SKIPPABLE,
                   help="a stage not to run this time (repeatable): `--skip summaries` gives GRPO the whole budget")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        handlers=[logging.StreamHandler(), logging.FileHandler(args.out / "run.log")])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        data = run(args.pack, args.out, PROFILES[args.profile], args.budget_s, args.device, tuple(args.skip))
    except gpu_pack.PackError as e:
        print(f"gpu_run: error: {e}", file=sys.stderr)
        return 1
    failed = [k for k, v in data["stages"].items() if "error" in v]
    print(json.dumps({k: v for k, v in data.items() if k != "pack"}, indent=1, default=str)[-6000:])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
