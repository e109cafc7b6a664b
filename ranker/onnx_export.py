"""Export a trained cross-encoder to ONNX: fp32, graph-optimised fp32, and int8, with parity checks.

The model is loaded with eager attention for export: that graph is the pattern onnxruntime's
transformer optimiser fuses (EmbedLayerNormalization, Attention, BiasGelu, SkipLayerNormalization);
the SDPA graph is left mostly unfused. The exported graph ends in a sigmoid, so every runtime
returns the same calibrated score in [0, 1] that training optimised.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FP32, OPTIMISED, INT8 = "model.onnx", "model.opt.onnx", "model.int8.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _wrapped(model):
    import torch

    class Scored(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            logits = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
            return torch.sigmoid(logits[:, 0])

    return Scored(model).eval()


def export(hf_dir: Path, out_dir: Path, sample: list[tuple[str, str]], quantize: bool = True) -> dict[str, float]:
    """Write the ONNX graphs next to `hf_dir` and return the max |score - PyTorch score| of each on `sample`."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import torch
    from onnxruntime.transformers import optimizer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ranker.scorer import OnnxScorer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForSequenceClassification.from_pretrained(hf_dir, attn_implementation="eager").eval()
    enc = tok([q for q, _ in sample[:2]], [t for _, t in sample[:2]], padding=True, return_tensors="pt")
    wrapped = _wrapped(model)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    axes["score"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            tuple(enc[n] for n in INPUTS),
            str(out_dir / FP32),
            input_names=list(INPUTS),
            output_names=["score"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the TorchScript graph is the one onnxruntime's optimiser fuses
        )
    cfg = model.config
    with _quiet_root():  # the optimiser logs each fusion at INFO on the root logger
        opt = optimizer.optimize_model(
            str(out_dir / FP32), model_type="bert", num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size
        )
        opt.save_model_to_file(str(out_dir / OPTIMISED))
    log.info("onnxruntime fusions: %s", {k: v for k, v in opt.get_fused_operator_statistics().items() if v})
    if quantize:
        _quantize(out_dir / OPTIMISED, out_dir / INT8)

    # parity against PyTorch on the sample, each graph through our own scorer
    with torch.no_grad():
        enc = tok([q for q, _ in sample], [t for _, t in sample], padding=True, truncation=True, max_length=256, return_tensors="pt")
        ref = wrapped(*(enc[n] for n in INPUTS)).numpy()
    parity = {}
    for name in (FP32, OPTIMISED, INT8) if quantize else (FP32, OPTIMISED):
        scorer = OnnxScorer(out_dir, model_file=name, max_length=256)
        got = scorer.score([q for q, _ in sample], [t for _, t in sample])
        parity[name] = float(np.abs(got - ref).max())
    return parity


def _quantize(src: Path, dst: Path) -> None:
    """int8 dynamic quantisation of the fused graph. The optimiser leaves stale shape annotations
    that onnx's shape inference rejects, so they are dropped first."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    del model.graph.value_info[:]
    clean = dst.with_suffix(".noshape.onnx")
    onnx.save(model, str(clean))
    try:
        with _quiet_root():  # the quantiser logs every tensor at INFO on the root logger
            quantize_dynamic(
                str(clean), str(dst), weight_type=QuantType.QInt8,
                # fused ops (Attention, SkipLayerNormalization) are outside onnx shape inference
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    finally:
        clean.unlink(missing_ok=True)


@contextmanager
def _quiet_root():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)
