"""int8 graphs calibrated against the fp32 scores they replace.

onnxruntime's dynamic quantisation (int8 weights, one scale per output channel; activations
quantised per call) halves the CPU time of scoring, but it moves some scores a lot: on the demo's
ranker, mean |int8 - fp32| 0.009 and max 0.066 on held-out pairs. The error is not spread evenly:
quantising one MatMul at a time, the feed-forward outputs of the lower layers (their inputs are
post-GELU activations with outliers that one per-tensor activation scale serves badly) cost 5-10x
more than the attention projections.

So the int8 graph is calibrated on training pairs (never evaluation rows):

1. each quantisable node (MatMul, fused Attention) is given a sensitivity, the relative error of
   its own output when its captured fp32 input and its weight are quantised the way the dynamic
   quantiser does it (one fp32 pass over the calibration texts, then numpy);
2. everything is quantised; while the mean |int8 - fp32| score on the calibration pairs exceeds
   the tolerance, the most sensitive nodes are kept in fp32 (a bisection over how many, each
   candidate graph scored for real);
3. the result (nodes kept in fp32, the calibration error, the tolerance) goes into `ranker.json`.

With no node kept the graph is plain dynamic int8; with every node kept it is the fp32 graph, so a
tolerance is always reachable. `ranker.config.RankerTrainConfig.int8_tolerance` documents the default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

QUANTISED_OPS = ("MatMul", "Attention")


@dataclass(frozen=True)
class Int8Calibration:
    """What calibration decided, as recorded in `ranker.json` under `int8`."""

    tolerance: float  # the bound on mean |int8 - fp32| score over the calibration pairs
    pairs: int  # calibration pairs (training queries only)
    nodes: int  # quantisable nodes in the graph
    kept_fp32: tuple[str, ...]  # nodes left unquantised, most sensitive first
    mean_abs_diff: float  # of the graph written, on the calibration pairs
    max_abs_diff: float
    uncalibrated_mean_abs_diff: float  # every node quantised, on the same pairs

    def to_json(self) -> dict:
        return {**asdict(self), "kept_fp32": list(self.kept_fp32)}


def quantise_dynamic(src: Path, dst: Path, keep_fp32: Sequence[str] = ()) -> None:
    """int8 dynamic quantisation of the fused graph `src`, one weight scale per output channel (per
    tensor, the bi-encoder's scores moved by up to 0.15 on real pairs; per channel, 0.06), leaving the
    nodes named in `keep_fp32` in fp32. The optimiser leaves stale shape annotations that onnx's
    shape inference rejects, so they are dropped first."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    del model.graph.value_info[:]
    clean = dst.with_suffix(".noshape.onnx")
    onnx.save(model, str(clean))
    try:
        # the quantiser logs every tensor at INFO, and a pre-processing hint at WARNING, on the root logger
        with quiet_root(logging.ERROR):
            quantize_dynamic(
                str(clean), str(dst), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=list(keep_fp32),
                # fused ops (Attention, SkipLayerNormalization) are outside onnx shape inference
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    finally:
        clean.unlink(missing_ok=True)


def calibrate_int8(
    src: Path,
    dst: Path,
    score: Callable[[Path], np.ndarray],
    feeds: list[dict[str, np.ndarray]],
    tolerance: float,
) -> Int8Calibration:
    """Write the int8 graph of `src` to `dst`, keeping as few of the most sensitive nodes in fp32 as
    bring the mean |score(dst) - score(src)| within `tolerance`. `score(path)` scores the calibration
    pairs with the graph at `path`; `feeds` are batches of the graph's inputs for the sensitivity pass."""
    reference = score(src)
    order = sensitivity_order(src, feeds)

    def attempt(k: int) -> np.ndarray:
        quantise_dynamic(src, dst, order[:k])
        return np.abs(score(dst) - reference)

    tried = {0: attempt(0)}
    last, k = 0, 0  # `last`: the graph now at dst
    uncalibrated = float(tried[0].mean())
    if uncalibrated > tolerance:
        lo, k = 0, len(order)  # lo misses the tolerance; k (everything in fp32) meets it
        while k - lo > 1:
            mid = (lo + k) // 2
            tried[mid], last = attempt(mid), mid
            lo, k = (lo, mid) if tried[mid].mean() <= tolerance else (mid, k)
        if last != k:
            tried[k] = attempt(k)
    diff = tried[k]
    result = Int8Calibration(
        tolerance=tolerance, pairs=len(reference), nodes=len(order), kept_fp32=tuple(order[:k]),
        mean_abs_diff=float(diff.mean()), max_abs_diff=float(diff.max()), uncalibrated_mean_abs_diff=uncalibrated,
    )
    log.info("int8 calibration: %d of %d nodes kept in fp32, mean |int8 - fp32| %.4f (all quantised %.4f, "
             "tolerance %.4f) on %d training pairs", k, len(order), result.mean_abs_diff, uncalibrated, tolerance,
             result.pairs)
    return result


def sensitivity_order(src: Path, feeds: list[dict[str, np.ndarray]]) -> list[str]:
    """The quantisable nodes of `src`, most sensitive first: each node's relative output error when
    its captured input is quantised per call (uint8, asymmetric) and its weight per output channel
    (int8, symmetric), as `quantise_dynamic` does."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(src))
    weights = {t.name: t for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in QUANTISED_OPS and len(n.input) > 1 and n.input[1] in weights]
    captured = sorted({n.input[0] for n in nodes})
    known = {o.name for o in model.graph.output}
    for name in captured:
        if name not in known:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the captured tensors
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}
    error = {n.name: [0.0, 0.0] for n in nodes}  # squared error, squared norm
    for feed in feeds:
        got = dict(zip(captured, session.run(captured, {k: v for k, v in feed.items() if k in inputs})))
        for n in nodes:
            x = got[n.input[0]].reshape(-1, got[n.input[0]].shape[-1]).astype(np.float32)
            w = onnx.numpy_helper.to_array(weights[n.input[1]]).astype(np.float32)
            exact = x @ w
            approx = _fake_quant_activation(x) @ _fake_quant_weight(w)
            error[n.name][0] += float(((approx - exact) ** 2).sum())
            error[n.name][1] += float((exact**2).sum())
    relative = {name: (e / s) ** 0.5 if s else 0.0 for name, (e, s) in error.items()}
    return sorted(relative, key=relative.get, reverse=True)


def _fake_quant_activation(x: np.ndarray) -> np.ndarray:
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255 or 1.0
    zero = np.round(-lo / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def _fake_quant_weight(w: np.ndarray) -> np.ndarray:
    scale = np.abs(w).max(axis=0, keepdims=True) / 127
    scale[scale == 0] = 1.0
    return np.clip(np.round(w / scale), -127, 127) * scale


@contextmanager
def quiet_root(level: int = logging.WARNING):
    """The root logger at `level` (WARNING by default) for a block: onnxruntime's optimiser and
    quantiser log each fusion and tensor at INFO there. Under -v (root at DEBUG) nothing is hidden."""
    root = logging.getLogger()
    before = root.level
    if before != logging.DEBUG:
        root.setLevel(max(level, before))
    try:
        yield
    finally:
        root.setLevel(before)
