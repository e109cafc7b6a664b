"""Export a trained ranker to ONNX: fp32, graph-optimised fp32, and calibrated int8, with parity checks.

The model is loaded with eager attention for export: that graph is the pattern onnxruntime's
transformer optimiser fuses (EmbedLayerNormalization, Attention, BiasGelu, SkipLayerNormalization);
the SDPA graph is left mostly unfused. A cross-encoder's graph ends in a sigmoid, so every runtime
returns the same calibrated score in [0, 1] that training optimised; a bi-encoder's graph returns
the unit-length mean-pooled embedding of one text, and the scorer applies the folder's head
(`ranker.architecture`). Parity compares the scores, through our own scorer, with PyTorch's.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ranker.architecture import BI, Head
from ranker.quantize import Int8Calibration, calibrate_int8, quantise_dynamic, quiet_root

log = logging.getLogger(__name__)

FP32, OPTIMISED, INT8 = "model.onnx", "model.opt.onnx", "model.int8.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _wrap(model, graph):
    """`model` with the three BERT inputs as positional arguments and `graph.output_of` as its output."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return graph.output_of(out, attention_mask)

    return Wrapped(model).eval()


class _Scored:
    """The cross-encoder's graph: pair inputs -> sigmoid score."""

    output = "score"

    @staticmethod
    def example(tok, sample: list[tuple[str, str]]):
        return tok([q for q, _ in sample], [t for _, t in sample], padding=True, return_tensors="pt")

    @staticmethod
    def load(hf_dir: Path):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(hf_dir, attn_implementation="eager").eval()

    @staticmethod
    def output_of(out, attention_mask):
        import torch

        return torch.sigmoid(out.logits[:, 0])

    @staticmethod
    def reference(wrapped, tok, sample: list[tuple[str, str]], head: Head) -> np.ndarray:
        enc = tok([q for q, _ in sample], [t for _, t in sample], padding=True, truncation=True, max_length=256,
                  return_tensors="pt")
        return wrapped(*(enc[n] for n in INPUTS)).numpy()


class _Embedded:
    """The bi-encoder's graph: one text's inputs -> its unit-length mean-pooled embedding."""

    output = "embedding"

    @staticmethod
    def example(tok, sample: list[tuple[str, str]]):
        return tok([t for _, t in sample], padding=True, return_tensors="pt")

    @staticmethod
    def load(hf_dir: Path):
        from transformers import AutoModel

        return AutoModel.from_pretrained(hf_dir, attn_implementation="eager").eval()

    @staticmethod
    def output_of(out, attention_mask):
        from ranker.models import mean_pooled

        return mean_pooled(out.last_hidden_state, attention_mask)

    @staticmethod
    def reference(wrapped, tok, sample: list[tuple[str, str]], head: Head) -> np.ndarray:
        def embed(texts):
            enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            return wrapped(*(enc[n] for n in INPUTS)).numpy()

        cosine = (embed([q for q, _ in sample]) * embed([t for _, t in sample])).sum(-1)
        return head.score(cosine)


@dataclass(frozen=True)
class Exported:
    parity: dict[str, float]  # graph file -> max |score - PyTorch score| on the parity sample
    int8: Int8Calibration | None  # None: no calibration pairs, plain dynamic int8


def export(
    folder: Path,
    sample: list[tuple[str, str]],
    calibration: list[tuple[str, str]] = (),
    int8_tolerance: float = 0.005,
    max_length: int = 128,
) -> Exported:
    """Write the ONNX graphs of the model saved in `folder` (`hf/` and `head.json`, see
    `ranker.models`) into it: fp32, fused fp32, and int8 calibrated on the `calibration` pairs
    (training pairs, never evaluation rows) to a mean |int8 - fp32| of `int8_tolerance`
    (`ranker.quantize`); return the max |score - PyTorch score| of each graph on `sample`."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import torch
    from onnxruntime.transformers import optimizer
    from transformers import AutoTokenizer

    from ranker.scorer import OnnxScorer

    out_dir, hf_dir = Path(folder), Path(folder) / "hf"
    head = Head.load(out_dir)
    graph = _Embedded if head.architecture == BI else _Scored
    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = graph.load(hf_dir)
    enc = graph.example(tok, sample[:2])
    wrapped = _wrap(model, graph)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    axes[graph.output] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            tuple(enc[n] for n in INPUTS),
            str(out_dir / FP32),
            input_names=list(INPUTS),
            output_names=[graph.output],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the TorchScript graph is the one onnxruntime's optimiser fuses
        )
    cfg = model.config
    with quiet_root():  # the optimiser logs each fusion at INFO on the root logger
        opt = optimizer.optimize_model(
            str(out_dir / FP32), model_type="bert", num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size
        )
        opt.save_model_to_file(str(out_dir / OPTIMISED))
    log.info("onnxruntime fusions: %s", {k: v for k, v in opt.get_fused_operator_statistics().items() if v})
    int8 = write_int8(out_dir, calibration, int8_tolerance, max_length)

    # parity against PyTorch on the sample, each graph through our own scorer
    with torch.no_grad():
        ref = graph.reference(wrapped, tok, sample, head)
    parity = {}
    for name in (FP32, OPTIMISED, INT8):
        scorer = OnnxScorer(out_dir, model_file=name, max_length=256)
        got = scorer.score([q for q, _ in sample], [t for _, t in sample])
        parity[name] = float(np.abs(got - ref).max())
    return Exported(parity, int8)


def write_int8(folder: Path, calibration: list[tuple[str, str]], tolerance: float, max_length: int) -> Int8Calibration | None:
    """The int8 graph of `folder`'s fused fp32 graph, calibrated on `calibration` (query, text)
    pairs to `tolerance` (`ranker.quantize`); plain dynamic int8 when there are no pairs."""
    from ranker.scorer import OnnxScorer

    folder = Path(folder)
    if not calibration:
        quantise_dynamic(folder / OPTIMISED, folder / INT8)
        return None
    queries, texts = [q for q, _ in calibration], [t for _, t in calibration]
    feeds = OnnxScorer(folder, OPTIMISED, max_length=max_length).feeds(queries[:64], texts[:64])
    return calibrate_int8(folder / OPTIMISED, folder / INT8,
                          lambda graph: OnnxScorer(folder, graph.name, max_length=max_length).score(queries, texts),
                          feeds, tolerance)
