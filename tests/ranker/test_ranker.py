"""The ranker library: training output, ONNX export and parity, the fast scorer, BM25, online
reranking, for both architectures. The default (bi-encoder) models come from the session fixture
`ranked_lake` (real training); a cross-encoder is trained here for a few real steps."""

import json

import numpy as np
import pytest

from ranker import registry
from ranker.architecture import BI, CROSS, HEAD_FILE, Head
from ranker.bm25 import bm25_scores
from ranker.rerank import ProductView, Reranker
from ranker.scorer import OnnxScorer, providers_for
from ranker.texts import product_text, summary_like, variant_text
from ranker.train import split_queries


@pytest.fixture(scope="module")
def versions(ranked_lake):
    return registry.versions(ranked_lake.cfg.ranker_dir)


def test_versions_and_manifest(versions):
    assert [v.name for v in versions] == ["v0001", "v0002"]
    trained, untrained = (registry.manifest(v) for v in versions)
    assert (trained["kind"], untrained["kind"]) == ("trained", "untrained")
    assert trained["train"]["steps"] == 3 and untrained["train"]["steps"] == 0
    split = trained["split"]
    assert split["val_queries"] and not set(split["val_queries"]) & set(split["train_queries"])
    snap = trained["snapshot"]
    assert snap["table"] == "bronze.judgments" and snap["rows"] == 400 and len(snap["ids_sha256"]) == 64
    assert 0 <= trained["metrics"]["val"]["ndcg@5"] <= 1
    assert trained["architecture"] == untrained["architecture"] == BI
    assert trained["head"]["scale"] > 0 and Head.load(versions[0]) == Head(**trained["head"])
    # the untrained baseline is the base model's cosine, calibrated on training pairs: not scale 1, bias 0
    assert untrained["head"]["scale"] != 1.0 and untrained["head"]["bias"] != 0.0
    for name in ("hf/config.json", "hf/tokenizer.json", "model.onnx", "model.opt.onnx", "model.int8.onnx"):
        assert (versions[0] / name).exists(), name
    assert registry.latest(versions[0].parent).name == "v0001"
    assert registry.latest(versions[0].parent, "untrained").name == "v0002"
    with pytest.raises(FileNotFoundError, match="v0009 not found"):
        registry.resolve(versions[0].parent, "v0009")


def test_onnx_parity_with_pytorch(versions):
    parity = registry.manifest(versions[0])["onnx_parity"]
    print("ONNX parity:", parity)
    assert parity["model.onnx"] < 1e-4 and parity["model.opt.onnx"] < 1e-4
    assert parity["model.int8.onnx"] < 0.1


def test_the_int8_graph_is_calibrated_within_its_tolerance_on_training_pairs(versions, ranked_lake):
    """The export keeps the most sensitive nodes in fp32 until int8 scores are within the
    tolerance of fp32 on training pairs, and records what it decided."""
    manifest = registry.manifest(versions[0])
    int8, cfg = manifest["int8"], ranked_lake.cfg.ranker.train
    print("int8 calibration:", {k: v for k, v in int8.items() if k != "kept_fp32"}, len(int8["kept_fp32"]), "kept")
    assert int8["tolerance"] == cfg.int8_tolerance and int8["pairs"] > 0 and int8["nodes"] >= 6 * 4
    assert int8["mean_abs_diff"] <= int8["tolerance"] and int8["max_abs_diff"] >= int8["mean_abs_diff"]
    assert len(int8["kept_fp32"]) < int8["nodes"]  # some of the graph is int8
    if int8["uncalibrated_mean_abs_diff"] > int8["tolerance"]:
        assert int8["kept_fp32"]


def test_calibration_keeps_more_nodes_in_fp32_for_a_tighter_tolerance(versions, tmp_path, caplog):
    """Calibrated on hand-picked pairs against the exported fp32 graph: a loose tolerance keeps the
    plain int8 graph, a tight one keeps nodes in fp32, and each meets its bound when re-scored."""
    import logging
    import shutil

    caplog.set_level(logging.INFO)

    from ranker.quantize import calibrate_int8, sensitivity_order

    folder = tmp_path / "r"
    shutil.copytree(versions[0], folder, ignore=shutil.ignore_patterns("model.onnx", "model.int8.onnx"))
    queries = ["shampoo for dry hair", "usb c cable", "red running shoes", "vitamin c serum"] * 4
    texts = ["Moisturising shampoo | for dry, damaged hair", "Anker USB-C to USB-C cable, 6 ft",
             "Nike Air Zoom Pegasus, red", "Retinol night cream"] * 2 + ["Phone case", "Garden hose 50 ft",
             "Lip balm | with SPF 15", "Hair dryer 1875 W"] * 2
    scorer = OnnxScorer(folder, "model.opt.onnx", max_length=64)
    feeds = scorer.feeds(queries, texts)
    order = sensitivity_order(folder / "model.opt.onnx", feeds)
    assert len(order) == len(set(order)) >= 24

    def score(graph):
        return OnnxScorer(folder, graph.name, max_length=64).score(queries, texts)

    loose = calibrate_int8(folder / "model.opt.onnx", folder / "model.int8.onnx", score, feeds, tolerance=0.5)
    assert loose.kept_fp32 == () and loose.mean_abs_diff == loose.uncalibrated_mean_abs_diff > 0
    tight = loose.uncalibrated_mean_abs_diff / 3
    calibrated = calibrate_int8(folder / "model.opt.onnx", folder / "model.int8.onnx", score, feeds, tolerance=tight)
    assert 0 < len(calibrated.kept_fp32) <= len(order) and calibrated.kept_fp32 == tuple(order[: len(calibrated.kept_fp32)])
    rescored = np.abs(score(folder / "model.int8.onnx") - score(folder / "model.opt.onnx"))
    assert rescored.mean() <= tight and abs(rescored.mean() - calibrated.mean_abs_diff) < 1e-6
    # onnxruntime's quantiser logs each tensor, and a pre-processing hint at WARNING, on the root logger
    assert [r.getMessage()[:80] for r in caplog.records if r.name == "root"] == []


def test_split_is_by_query_and_seeded():
    qs = [f"q{i}" for i in range(50)] * 3
    a, b = split_queries(qs, 0.2, seed=1), split_queries(qs, 0.2, seed=1)
    assert a == b and len(a.val_queries) == 10 and not set(a.val_queries) & set(a.train_queries)
    assert split_queries(qs, 0.2, seed=2).val_queries != a.val_queries


def test_scorer_is_padding_independent_and_keeps_order(versions):
    scorer = OnnxScorer(versions[0], "model.onnx", batch_size=4)
    queries = ["usb cable", "red shoes", "led lights", "usb cable", "projector"]
    texts = ["Anker USB-C cable 2m | braided " * 5, "Nike shoe", "x", "cable", "ViewSonic Pro8200 DLP Projector | 1080p home theater"]
    together = scorer.score(queries, texts)
    alone = np.array([scorer.score([q], [t])[0] for q, t in zip(queries, texts)])
    assert np.abs(together - alone).max() < 1e-5
    assert ((together >= 0) & (together <= 1)).all()
    assert scorer.score([], []).shape == (0,)
    with pytest.raises(ValueError):
        scorer.score(["a"], [])


def test_cuda_provider_requires_onnxruntime_gpu_on_this_cpu_machine():
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    assert providers_for("auto") == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        providers_for("cuda")


def test_missing_model_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="precis train ranker"):
        OnnxScorer(tmp_path, "model.onnx")


def test_texts():
    assert product_text("Title", None) == "Title" and product_text("Title", "  ") == "Title"
    assert product_text("Title", "desc") == "Title | desc"
    assert summary_like("one two three four", 2) == "one two"
    assert variant_text("title_desc", "T", None) is None
    assert variant_text("title_summary", "T", "a b c d", summary_words=2) == "T | a b"
    with pytest.raises(ValueError):
        variant_text("bogus", "T", "d")


def test_bm25_prefers_matching_text():
    s = bm25_scores(["usb cable", "usb cable", "usb cable"], ["USB-C cable braided", "red shoe", "usb hub"])
    assert s[0] > s[2] > s[1] == 0


def test_reranker_uses_summary_when_present(versions):
    scorer = OnnxScorer(versions[0])
    products = {
        "a": ProductView("a", "Projector"),
        "b": ProductView("b", "Projector", summary="Full HD 1080p DLP projector for home theater"),
    }
    ranked = Reranker(scorer, products).rerank("1080p projector", ["a", "b"])
    assert {r.product_id: r.used_summary for r in ranked} == {"a": False, "b": True}
    assert ranked[0].score >= ranked[1].score
    expected = scorer.score(["1080p projector"], ["Projector | Full HD 1080p DLP projector for home theater"])[0]
    assert dict((r.product_id, r.score) for r in ranked)["b"] == pytest.approx(float(expected))
    with pytest.raises(KeyError, match="zzz"):
        Reranker(scorer, products).rerank("q", ["a", "zzz"])


def test_the_extractive_baseline_keeps_whole_leading_sentences_within_the_word_budget():
    from ranker.texts import leading_sentences

    text = "Soft cotton towel.  Machine washable at 40 degrees! Made in Portugal. Ships fast."
    assert leading_sentences(text, 8) == "Soft cotton towel. Machine washable at 40 degrees!"  # 3 + 5 words; the next 3 pass 8
    assert leading_sentences(text, 3) == "Soft cotton towel."
    assert leading_sentences("one two three four five six", 4) == "one two three four"  # a long first sentence is cut
    assert leading_sentences("   ", 5) is None and leading_sentences(None, 5) is None


def test_head_is_checked_saved_and_defaults_to_cross_encoder_for_old_folders(tmp_path):
    assert Head.load(tmp_path) == Head(CROSS)  # folders written before head.json existed
    head = Head(BI, scale=6.0, bias=-2.0)
    head.save(tmp_path)
    assert (tmp_path / HEAD_FILE).exists() and Head.load(tmp_path) == head
    scores = head.score(np.array([-0.2, 0.1, 0.5, 0.9]))
    assert (np.diff(scores) > 0).all() and ((scores > 0) & (scores < 1)).all()
    assert scores[2] == pytest.approx(1 / (1 + np.exp(-(6.0 * 0.5 - 2.0))))
    with pytest.raises(ValueError, match="unknown ranker architecture 'siamese'"):
        Head("siamese")
    with pytest.raises(ValueError, match="scale > 0"):
        Head(BI, scale=-1.0)
    with pytest.raises(ValueError, match="finite"):
        Head(BI, scale=float("nan"))


def test_bi_encoder_scores_each_pair_as_if_alone(versions):
    """The bi-encoder scorer embeds each distinct string once per call; that must not change a score."""
    scorer = OnnxScorer(versions[0], "model.opt.onnx")
    queries = ["usb cable"] * 3 + ["red shoes", "usb cable"]
    texts = ["Anker USB-C cable", "red shoe", "usb cable", "red shoe", "Anker USB-C cable"]
    together = scorer.score(queries, texts)
    alone = np.array([scorer.score([q], [t])[0] for q, t in zip(queries, texts)])
    assert np.abs(together - alone).max() < 1e-5
    assert together[0] == together[4]
    assert together[0] > together[1]  # the base model's similarity survives three steps of training


def test_cross_encoder_still_trains_exports_and_scores(tmp_path, cf_subset, versions, ranked_lake):
    """The other architecture, a few real steps: fresh head, pair graph with a sigmoid, parity."""
    import pandas as pd

    from ranker.config import RankerTrainConfig
    from ranker.train import train_and_export

    cf = pd.read_csv(cf_subset, dtype=str, keep_default_na=False).head(120)
    pairs = pd.DataFrame({"query_id": cf["query"], "query": cf["query"], "product_id": cf["id"],
                          "title": cf["product_title"], "description": cf["product_description"],
                          "gain": (cf["median_relevance"].astype(int) - 1) / 3})
    from generator.models import MINILM, resolve

    # the manifest names the base model portably, never by this machine's path
    assert registry.manifest(versions[0])["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    encoder = resolve(MINILM, ranked_lake.cfg.cache_dir)
    cfg = RankerTrainConfig(architecture="cross-encoder", max_steps=2, batch_size=8)
    folder = train_and_export(pairs, encoder, tmp_path, cfg, {"table": "test"}, progress=False)
    manifest = registry.manifest(folder)
    assert manifest["architecture"] == CROSS and Head.load(folder) == Head(CROSS)
    assert manifest["train"]["steps"] == 2 and manifest["onnx_parity"]["model.onnx"] < 1e-4
    scores = OnnxScorer(folder, "model.onnx").score(["usb cable", "red shoes"], ["Anker USB-C cable", "Nike shoe"])
    assert scores.shape == (2,) and ((scores > 0) & (scores < 1)).all()
