"""Generation backends behind one interface: a batch of chat prompts and sampling parameters in,
texts and token counts out.

- `TransformersBackend`: CPU or one GPU. Prompts are sorted by length and batched with left
  padding, so each batch pads only to its own longest prompt; greedy unless a temperature is set.
- Every backend also reads a score's distribution over its allowed values (`score`), which
  `generator.scoring` turns into an expected value and an entropy.
- `VLLMBackend`: vLLM on GPUs (the `gpu` extra, a separate environment), LoRA adapters through
  vLLM's LoRA support.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from generator.scoring import ScoreDistribution, TokenSeq, choice_distributions, spellings
from precis.errors import ConfigError

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int = 0
    # > 1 lowers the logits of tokens the output already holds (CTRL's penalty): a 135M model's
    # greedy loops ("10-ounce, 10-ounce, ...") stop; 1.0 is off. The transformers backend applies it
    # to the output only (prompt tokens ignored), so a summary may still reuse the reviews' words;
    # vLLM's and OpenAI-compatible servers' `repetition_penalty` also count the prompt's tokens
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0 is off), got {self.repetition_penalty}")


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class BackendStats:
    """Running totals, for progress lines (tokens per second)."""

    prompts: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0


class Backend(Protocol):
    model_id: str
    adapter_version: str | None
    stats: BackendStats

    def generate(self, prompts: Sequence[Messages], params: SamplingParams) -> list[Generation]: ...

    def score(self, prompts: Sequence[Messages], choices: Sequence[str]) -> list[ScoreDistribution]:
        """Each prompt's distribution over `choices` as its continuation (generator.scoring)."""
        ...


def load_adapter(model, path: str | Path, trainable: bool = False):
    """`model` with the LoRA adapter at `path` (peft). peft reads transformers' deprecated
    `is_gradient_checkpointing` while it loads; that FutureWarning is theirs, not the user's, and
    printed once per Spark worker it would bury the run's own lines, so it is silenced here alone."""
    import warnings

    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return PeftModel.from_pretrained(model, str(path), is_trainable=trainable)


def _cache_name() -> str:
    """What transformers calls a model's KV cache, in its outputs and forward() arguments: `cache`
    from 5.2x on (where `past_key_values` still works but warns), `past_key_values` before."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def resolve_dtype(choice: str, device: str):
    """bfloat16 on GPUs and on CPUs with native bf16 (AVX512-BF16, AMX), where it runs about twice
    as fast as float32; float32 elsewhere, where bf16 would be emulated and slow."""
    import torch

    if choice != "auto":
        return getattr(torch, choice)
    if device == "cuda":
        return torch.bfloat16
    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return torch.bfloat16 if native is not None and native() else torch.float32


def render_prompt(tokenizer, messages: Messages) -> str:
    """The chat prompt as text. A final assistant message is a reply prefix the model continues
    ("Rating:"), which keeps small models on the expected format. Training renders prompts with
    this same function, so an adapter sees at inference exactly the prompts it was trained on."""
    if messages and messages[-1]["role"] == "assistant":
        return tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@dataclass
class TransformersBackend:
    """Batched generation with transformers. `model_path` is a local folder (see generator.models)."""

    model_path: str
    model_id: str
    adapter_path: str | None = None
    adapter_version: str | None = None
    batch_size: int = 16
    device: str = "auto"
    threads: int = 0
    dtype: str = "auto"  # auto | float32 | bfloat16
    adapter_scope: str = "all"  # all | score: a score-only adapter is off while text is generated
    stats: BackendStats = field(default_factory=BackendStats)

    def __post_init__(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._device = device
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=resolve_dtype(self.dtype, device))
        if self.adapter_path:
            model = load_adapter(model, self.adapter_path)
        self.model = model.to(device).eval()

    def render(self, messages: Messages) -> str:
        return render_prompt(self.tokenizer, messages)

    def _text_adapter(self):
        """The adapter as text generation uses it: off for a score-only adapter (`adapter_scope`)."""
        import contextlib

        if self.adapter_path and self.adapter_scope == "score":
            return self.model.disable_adapter()
        return contextlib.nullcontext()

    def _batches(self, prompts: Sequence[Messages]):
        """(prompt indices, left-padded batch) in order of prompt length, so padding stays small."""
        ids = [self.tokenizer(self.render(m), add_special_tokens=False)["input_ids"] for m in prompts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, padding=True, return_tensors="pt")
            yield idx, [len(ids[i]) for i in idx], batch.to(self._device)

    def score(self, prompts: Sequence[Messages], choices: Sequence[str]) -> list[ScoreDistribution]:
        """Each prompt's distribution over `choices` (generator.scoring): prompts batched by length
        with left padding, each batch prefilled once, then a token or two per node of the choices'
        token trie on top of its KV cache; only the last position's logits are computed."""
        encode = lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        prompt_ids = [encode(self.render(m)) for m in prompts]
        return choice_distributions(len(prompts), choices, spellings(choices, encode),
                                    lambda req, wanted: self._next_logprobs(prompt_ids, req, wanted))

    def _next_logprobs(self, prompt_ids: list[list[int]], requests: list[tuple[int, TokenSeq]],
                       wanted: list[list[int]]) -> list[dict[int, float]]:
        """Each prompt batch is prefilled once (KV cache kept); every trie node's few tokens then
        run on top of that cache, which is cropped back to the prompt after each node."""
        import torch

        cache_name = _cache_name()
        nodes = sorted({prefix for _, prefix in requests}, key=lambda n: (len(n), n))
        where = {req: k for k, req in enumerate(requests)}
        out: list[dict[int, float]] = [{} for _ in requests]
        prompts = sorted({i for i, _ in requests}, key=lambda i: len(prompt_ids[i]))
        for start in range(0, len(prompts), self.batch_size):
            idx = prompts[start : start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [prompt_ids[i] for i in idx]}, padding=True, return_tensors="pt")
            batch = batch.to(self._device)
            mask = batch["attention_mask"]
            # left padding: positions count real tokens only, as generate() computes them
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                first = self.model(**batch, position_ids=positions, use_cache=True, logits_to_keep=1)
                cache = first[cache_name]
                for node in nodes:
                    if not node:
                        logits = first.logits[:, -1, :]
                    else:
                        ids = torch.tensor([list(node)] * len(idx), device=self._device)
                        step = torch.arange(1, len(node) + 1, device=self._device)
                        more = self.model(input_ids=ids, attention_mask=torch.cat([mask, torch.ones_like(ids)], dim=1),
                                          position_ids=positions[:, -1:] + step, use_cache=True, logits_to_keep=1,
                                          **{cache_name: cache})
                        logits = more.logits[:, -1, :]
                        cache.crop(-len(node))
                    logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
                    for row, i in enumerate(idx):
                        k = where.get((i, node))
                        if k is not None:
                            out[k] = {t: float(logprobs[row, t]) for t in wanted[k]}
        return out

    def generate(self, prompts: Sequence[Messages], params: SamplingParams) -> list[Generation]:
        import torch

        t0 = time.perf_counter()
        out: list[Generation | None] = [None] * len(prompts)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        for idx, lengths, batch in self._batches(prompts):
            kwargs = dict(max_new_tokens=params.max_new_tokens, pad_token_id=pad, eos_token_id=eos)
            if params.repetition_penalty != 1.0:  # on the output only: a summary may reuse the prompt's words
                from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

                kwargs["logits_processor"] = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(
                    float(params.repetition_penalty), prompt_ignore_length=batch["input_ids"].shape[1])])
            if params.temperature > 0:
                torch.manual_seed(params.seed)
                kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            with torch.inference_mode(), self._text_adapter():
                gen = self.model.generate(**batch, **kwargs)
            new = gen[:, batch["input_ids"].shape[1] :]
            for row, i in enumerate(idx):
                tokens = new[row].tolist()
                n = next((k + 1 for k, t in enumerate(tokens) if t == eos), len(tokens))
                text = self.tokenizer.decode(tokens[:n], skip_special_tokens=True)
                out[i] = Generation(text.strip(), lengths[row], n)
        self.stats.prompts += len(prompts)
        self.stats.completion_tokens += sum(g.completion_tokens for g in out if g)
        self.stats.seconds += time.perf_counter() - t0
        return [g for g in out if g is not None]


@dataclass
class VLLMBackend:
    """vLLM on GPUs. Needs the `gpu` extra (its own CUDA torch) and is not importable on the CPU set-up."""

    model_path: str
    model_id: str
    adapter_path: str | None = None
    adapter_version: str | None = None
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 4096
    adapter_scope: str = "all"  # all | score: a score-only adapter is off while text is generated
    stats: BackendStats = field(default_factory=BackendStats)

    def __post_init__(self) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:  # pragma: no cover - CPU set-up
            raise RuntimeError("the vLLM backend needs the GPU environment: pip install -e '.[gpu]'") from exc
        self.llm = LLM(
            model=self.model_path,
            enable_lora=self.adapter_path is not None,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_model_len=self.max_model_len,
        )
        self._lora = None
        if self.adapter_path:
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest(self.adapter_version or "adapter", 1, self.adapter_path)

    def generate(self, prompts: Sequence[Messages], params: SamplingParams) -> list[Generation]:
        from vllm import SamplingParams as VSP

        t0 = time.perf_counter()
        sp = VSP(max_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p, seed=params.seed,
                 repetition_penalty=params.repetition_penalty)
        prefixed = bool(prompts) and prompts[0][-1]["role"] == "assistant"
        text_lora = None if self.adapter_scope == "score" else self._lora
        results = self.llm.chat(list(prompts), sp, lora_request=text_lora, use_tqdm=False,
                                add_generation_prompt=not prefixed, continue_final_message=prefixed)
        out = [Generation(r.outputs[0].text.strip(), len(r.prompt_token_ids), len(r.outputs[0].token_ids)) for r in results]
        self.stats.prompts += len(out)
        self.stats.completion_tokens += sum(g.completion_tokens for g in out)
        self.stats.seconds += time.perf_counter() - t0
        return out

    def score(self, prompts: Sequence[Messages], choices: Sequence[str]) -> list[ScoreDistribution]:
        """Each prompt's distribution over `choices`, from vLLM's top log-probabilities of one
        generated token after each (prompt, trie node) (a wanted token outside the top
        `max_logprobs` counts as probability 0)."""
        from vllm import SamplingParams as VSP
        from vllm.inputs import TokensPrompt

        tokenizer = self.llm.get_tokenizer()
        encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        prompt_ids = [encode(tokenizer.apply_chat_template(m, tokenize=False, continue_final_message=True))
                      for m in prompts]
        top = self.llm.llm_engine.model_config.max_logprobs

        def next_logprobs(requests, wanted):
            sp = VSP(max_tokens=1, temperature=0.0, logprobs=top)
            results = self.llm.generate([TokensPrompt(prompt_token_ids=prompt_ids[i] + list(p)) for i, p in requests],
                                        sp, lora_request=self._lora, use_tqdm=False)
            out = []
            for r, want in zip(results, wanted):
                got = r.outputs[0].logprobs[0]
                out.append({t: got[t].logprob for t in want if t in got})
            return out

        return choice_distributions(len(prompts), choices, spellings(choices, encode), next_logprobs)


def load_backend(kind: str, model_path: str | Path, model_id: str, adapter_path: str | None = None,
                 adapter_version: str | None = None, **options) -> Backend:
    if kind == "transformers":
        return TransformersBackend(str(model_path), model_id, adapter_path, adapter_version, **options)
    if kind == "vllm":
        return VLLMBackend(str(model_path), model_id, adapter_path, adapter_version, **options)
    raise ValueError(f"unknown generator backend '{kind}'; use transformers or vllm")


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def check_key_transport(url: str, api_key_env: str) -> None:
    """A key travels over https, or over http to this machine only."""
    from urllib.parse import urlsplit

    from generator.safety import public_url

    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return
    raise ConfigError(f"refusing to send the key in ${api_key_env} to {public_url(url)} over {parts.scheme or 'no scheme'}: "
                      "use an https:// endpoint (plain http is allowed to localhost only)")


@dataclass
class OpenAICompatBackend:
    """A teacher or judge behind an OpenAI-compatible HTTP endpoint (`/chat/completions`). The key
    is read from an environment variable at call time and never stored in repr or logs."""

    base_url: str
    model_id: str
    api_key_env: str = "PRECIS_TEACHER_API_KEY"
    timeout_s: float = 120.0
    adapter_version: str | None = None
    stats: BackendStats = field(default_factory=BackendStats)

    def _post(self, messages: Messages, max_tokens: int, temperature: float, logprobs: bool = False,
              repetition_penalty: float = 1.0) -> dict:
        """One request through httpx, which follows redirects but drops `Authorization` on any
        redirect to another origin (host, port, or a downgrade from https). The key is sent over
        plain http only to a loopback host."""
        import os

        import httpx

        body = {"model": self.model_id, "messages": list(messages), "max_tokens": max_tokens, "temperature": temperature}
        if logprobs:
            body.update(logprobs=True, top_logprobs=20)
        if repetition_penalty != 1.0:  # not in OpenAI's schema; vLLM's and llama.cpp's servers read it
            body["repetition_penalty"] = repetition_penalty
        url = self.base_url.rstrip("/") + "/chat/completions"
        headers = {}
        key = os.environ.get(self.api_key_env)
        if key:
            check_key_transport(url, self.api_key_env)
            headers["Authorization"] = f"Bearer {key}"
        with httpx.Client(follow_redirects=True, timeout=self.timeout_s) as client:
            resp = client.post(url, json=body, headers=headers)
        resp.raise_for_status()
        return resp.json()

    def generate(self, prompts: Sequence[Messages], params: SamplingParams) -> list[Generation]:
        out = []
        for messages in prompts:
            data = self._post(messages, params.max_new_tokens, params.temperature,
                              repetition_penalty=params.repetition_penalty)
            text = data["choices"][0]["message"]["content"] or ""
            usage = data.get("usage") or {}
            tokens = int(usage.get("completion_tokens", len(text.split())))
            self.stats.prompts += 1
            self.stats.completion_tokens += tokens
            out.append(Generation(text, int(usage.get("prompt_tokens", 0)), tokens))
        return out

    def score(self, prompts: Sequence[Messages], choices: Sequence[str]) -> list[ScoreDistribution]:
        """From the endpoint's top log-probabilities of its first answer token, over the tokens that
        are a whole choice; one-hot on its answer when it returns none, or when its answer is a
        longer choice whose first token is also a choice ("10" after "1"), which one token cannot
        separate. The answer must be one of `choices` (longest match first, so 10 beats 1)."""
        import math
        import re

        ordered = sorted(choices, key=len, reverse=True)
        out = []
        for messages in prompts:
            data = self._post(messages, 4, 0.0, logprobs=True)
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            found = next((c for c in ordered if re.match(rf"\s*{re.escape(c)}\b", text)), None)
            if found is None:
                raise ValueError(f"endpoint answered {text[:40]!r}, none of {list(choices)}")
            first = ((choice.get("logprobs") or {}).get("content") or [{}])[0]
            masses = {c: 0.0 for c in choices}
            for alt in first.get("top_logprobs") or []:
                token = str(alt.get("token", "")).strip()
                if token in masses:
                    masses[token] += math.exp(float(alt["logprob"]))
            if sum(masses.values()) <= 0 or str(first.get("token", "")).strip() != found:
                out.append(ScoreDistribution.one_hot(choices, found))
            else:
                out.append(ScoreDistribution.from_masses(masses))
        return out
