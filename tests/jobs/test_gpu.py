"""The GPU runbook's CPU round trip: `precis gpu pack` from a real lake, the device's own script
(`python3 -m training.gpu_run --profile tiny`) in a fresh process on the CPU over the assembled
parcels, and `precis gpu import` back into the lake, read by evaluate_ranking."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO, make_lake


@pytest.mark.slow
def test_gpu_runbook_round_trip_on_cpu(tmp_path, spark, ranked_lake):
    from generator.tasks import relsum
    from jobs import gpu
    from jobs.ranking import evaluate_ranking
    from training import gpu_pack, registry

    root = tmp_path / "lake"
    shutil.copytree(ranked_lake.root, root)  # the shared lake stays as other tests expect it
    lake = make_lake(root, spark, ranker__train__batch_size="8")
    registry.install(REPO / "adapters", lake.cfg.adapters_dir)  # the shipped ReLSum student: GRPO's parent
    parent = registry.latest(lake.cfg.adapters_dir, "relsum")

    packed = gpu.pack(lake, tmp_path / "pack", parcel_mib=30, max_train=8, parity_pairs=16, wheels=False, probe_tokens=4)
    assert len(packed.parcels) == 5  # the 98 MB GGUF and the half-precision ranker cut into 30 MiB parcels
    meta = gpu_pack.manifest(tmp_path / "pack")["meta"]
    assert meta["relsum"]["prompt_version"] == relsum.task(lake.cfg.generation.relsum_max_tokens).prompt_version
    assert meta["data"]["train_prompts"] == 8 and meta["data"]["heldout_products"] > 0
    assert meta["cpu_throughput"]["tokens_per_s"] > 0
    assert meta["parent_adapter"] == {"tag": registry.tag(parent), "path": str(parent)}

    out = tmp_path / "out"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OUT": str(out)}
    proc = subprocess.run([sys.executable, "-m", "training.gpu_run", str(tmp_path / "pack"), "--profile", "tiny",
                           "--device", "cpu", "--budget-s", "900"], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    stages = results["stages"]
    assert not [k for k, v in stages.items() if "error" in v]
    assert stages["model_parity"]["tensors"] > 200 and stages["model_parity"]["max_rel_diff"] < 1e-6  # the CPU's model
    assert stages["parity"]["pairs"] == 16 and stages["parity"]["max_abs_diff"] < 5e-3  # fp16 weights vs the ONNX graph
    assert [r["batch"] for r in stages["throughput"]["rows"]] == [1, 2]
    assert all(r["tokens_per_s"] > 0 for r in stages["throughput"]["rows"])
    grpo = stages["grpo"]
    assert grpo["steps"] == 2 and grpo["complete"] and len(grpo["curve"]) == 2
    assert grpo["parent"].endswith("adapters/parent")
    assert all(stages["summaries"][v]["products"] == 4 for v in ("base", "parent", "adapter"))
    assert 0 <= stages["summaries"]["adapter"]["support_mean"] <= 1
    assert stages["heldout_reward"]["pairs"] > 0 and {"base", "parent", "adapter", "title_only"} <= set(stages["heldout_reward"])

    imported = gpu.import_results(lake, out, "2024-05-02")
    assert imported.adapter is not None and registry.manifest(imported.adapter)["status"] == "candidate"
    m = registry.manifest(imported.adapter)
    assert m["steps"] == 2 and m["device"] == "cpu" and m["curve"] and m["snapshot"]
    assert m["parent_adapter"] == str(parent) and (imported.adapter / "curve.png").exists()
    assert registry.latest(lake.cfg.adapters_dir, "relsum") != imported.adapter  # not used until promoted
    rows = lake.read_pandas("gold.product_summaries")
    ok = {v: stages["summaries"][v]["ok"] for v in ("base", "parent", "adapter")}
    assert sorted(rows.adapter_version.value_counts().items()) == sorted(
        [("base", ok["base"]), (registry.tag(parent), ok["parent"]), (imported.tag, ok["adapter"])])
    assert set(rows.model_id) == {"HuggingFaceTB/SmolLM2-135M-Instruct"}
    assert set(rows.prompt_version) == {meta["relsum"]["prompt_version"]}
    # input_hash is the generation job's: sha256 of the inputs' JSON (keys sorted), first 32 hex
    products = lake.read_pandas("bronze.products", ["product_id", "title", "description"]).set_index("product_id")
    r = rows.iloc[0]
    p = products.loc[r.product_id]
    raw = json.dumps({"description": p.description, "max_tokens": lake.cfg.generation.relsum_max_tokens, "title": p.title},
                     separators=(",", ":"), ensure_ascii=False)
    assert r.input_hash == hashlib.sha256(raw.encode()).hexdigest()[:32]

    evaluate_ranking(lake, "2024-05-02")
    variants = set(lake.read_pandas("eval.ranking_metrics").variant)
    assert {"summary:base", f"summary:{registry.tag(parent)}", f"summary:{imported.tag}"} <= variants
