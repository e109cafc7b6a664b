"""Fast batched ranker scoring with onnxruntime, for both architectures (`ranker.architecture`).

Inputs are tokenised once (the Rust `tokenizers` library, no transformers import), sorted by
length, and each batch is padded only to its own longest input: short titles are not padded to
the length of long descriptions, which is where most of the CPU time of a naive scorer goes. A
bi-encoder embeds each distinct query and each distinct text once per call, however many pairs
they are in (a reward scoring many summaries of one query, a rerank of 50 candidates).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ranker.architecture import BI, Head
from ranker.config import ScorerConfig
from precis.errors import NoRanker

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def providers_for(choice: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if choice == "cuda" or (choice == "auto" and "CUDAExecutionProvider" in available):
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError("provider 'cuda' asked for, but onnxruntime has no CUDA provider: install onnxruntime-gpu")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxScorer:
    """r(query, text) in [0, 1] from an exported ranker folder (see `ranker.registry`)."""

    def __init__(
        self,
        model_dir: str | Path,
        model_file: str = "model.opt.onnx",
        batch_size: int = 64,
        max_length: int = 256,
        threads: int = 0,
        provider: str = "auto",
    ):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        self.path = model_dir / model_file
        if not self.path.exists():
            raise NoRanker(f"{self.path} does not exist", "train and export a ranker first (precis train ranker)")
        self.batch_size = batch_size
        self.head = Head.load(model_dir)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "hf" / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length, strategy="longest_first")
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), opts, providers=providers_for(provider))

    @classmethod
    def configured(cls, model_dir: str | Path, cfg: ScorerConfig, serving: bool = False,
                   max_length: int | None = None) -> OnnxScorer:
        """The scorer `cfg` describes: its offline graph, or with `serving` its online one."""
        return cls(model_dir, cfg.serving_model_file if serving else cfg.model_file, cfg.batch_size,
                   max_length or cfg.max_length, cfg.threads, cfg.provider)

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def score(self, queries: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        encode = self.tokenizer.encode_batch
        return self.head.pair_scores(queries, texts, lambda distinct: self._run(encode(distinct)),
                                     lambda pairs: self._run(encode(pairs)))

    def feeds(self, queries: Sequence[str], texts: Sequence[str]) -> list[dict[str, np.ndarray]]:
        """The graph's input batches for these pairs, as `score` builds them: the distinct texts of
        a bi-encoder, the pairs of a cross-encoder (for calibration, `ranker.quantize`)."""
        encode = self.tokenizer.encode_batch
        if self.head.architecture == BI:
            encs = encode(sorted(set(map(str, queries)) | set(map(str, texts))))
        else:
            encs = encode(list(zip(map(str, queries), map(str, texts))))
        return [feed for _, feed in self._batches(encs)]

    def _run(self, encs) -> np.ndarray:
        """The graph's output for each encoding, in input order: one score (cross-encoder) or one
        embedding (bi-encoder) per row."""
        out: np.ndarray | None = None
        for idx, feeds in self._batches(encs):
            got = self.session.run(None, feeds)[0]
            if out is None:
                out = np.empty((len(encs), *got.shape[1:]), dtype=np.float32)
            out[idx] = got
        return out

    def _batches(self, encs):
        """(row indices, inputs) per batch, rows sorted by length, each batch padded to its longest."""
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = int(lengths[idx].max())
            ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
            types = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                e = encs[i]
                n = len(e.ids)
                ids[row, :n] = e.ids
                types[row, :n] = e.type_ids
                mask[row, :n] = 1
            yield idx, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
