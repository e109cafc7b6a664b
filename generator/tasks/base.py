"""What every generation task shares: a versioned prompt template, an output parser that is also
the validator, a bounded number of retries, and a failure status with its reason.

A task's `prompt_version` is a hash of its template text and parsing rules' version tag, so any
change to the prompt changes the version recorded in every row, and the generation job treats
rows made with the old prompt as stale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from generator.backends import Backend, Messages, SamplingParams
from generator.safety import DATA_NOTE, clean_input, contains_pii, delimit, strip_markup
from precis.errors import InvalidOutput

# Bump when `clean_output`'s rules change: it is part of every task's prompt_version.
# 2: an output that copies a data block's label (`delimit`) is the prompt echoed, not an answer.
OUTPUT_RULES_VERSION = "2"

# The output-only repetition penalty (`SamplingParams.repetition_penalty`) of the free-text tasks
# whose greedy 135M output loops: the profiles, the RPO rewrite and the persona summary. Chosen on
# users the evaluation never uses (the validation region of `jobs.train.pairs`): at 1.1 the mean
# distinct-2 of profiles went 0.82 -> 0.97 (11 users), of rewrites 0.67 -> 0.98 (10) and of persona
# summaries 0.88 -> 0.99 (16, whose suitability Spearman with the actual rating stayed 0.58); the
# share of their words found in the inputs held (profiles 0.39 -> 0.36, rewrites 0.46 -> 0.52);
# 1.2 and 1.3 shortened the text more.
LOOP_PENALTY = 1.1


def input_hash(inputs: dict[str, Any]) -> str:
    """A hash of the exact inputs a row was generated from (canonical JSON)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class TaskResult:
    status: str  # ok | failed
    value: dict[str, Any] | None  # the validated fields when ok
    raw: str  # the last raw model output
    reason: str | None  # why it failed
    attempts: int
    completion_tokens: int


@dataclass(frozen=True)
class ScoreSpec:
    """A score appended after the free text: `label` then one of `choices`, read from the model's
    distribution over the choices (Backend.score, see generator.scoring). The text gets the choice
    `reading` names (default the distribution's median, the integer with the least expected
    absolute error); the parsed value gets `<field>_expected` (the expected value) and
    `<field>_entropy` beside the parser's `<field>`. The free text is cut where the model starts
    its own label."""

    label: str  # e.g. "Rating (1-5):"
    choices: tuple[str, ...]
    cut_at: str  # case-insensitive regex: where the model's own attempt at the label starts
    field: str  # the parser's key for the integer score, e.g. "predicted_rating"
    reading: str = "median"  # median | rounded-expected: which choice the text gets (in prompt_version)
    # a str.format template over the task's inputs, put on its own line between the free text and
    # the label (e.g. the rating history): what the model reads right before it scores
    lead: str = ""
    # a str.format template over the task's inputs and `text_block` (the free text, cleaned and
    # delimited as `text_label`): when set, the score is read in a short conversation of its own
    # (the task's system message, this as the user's message, the label as the reply) instead of
    # after the whole task prompt. The score then judges the text it is printed beside, a student
    # learns it from a few hundred tokens instead of the whole prompt, and reading it costs a
    # prefill of this prompt only. The lead line stays in the output text either way.
    prompt: str = ""
    text_label: str = "Text"

    def __post_init__(self) -> None:
        if self.reading not in ("median", "rounded-expected"):
            raise ValueError(f"score {self.field}: reading must be median or rounded-expected, got {self.reading!r}")
        try:
            [float(c) for c in self.choices]
        except ValueError as exc:
            raise ValueError(f"score {self.field}: choices must be numbers, got {self.choices}") from exc

    def reply(self, text: str, inputs: dict[str, Any]) -> str:
        """The reply the score is read after: `text` (already cut), the lead line if any, the label."""
        lead = self.lead.format(**inputs) + "\n" if self.lead else ""
        return f"{text.rstrip()}\n{lead}{self.label}"

    def messages(self, system: str, inputs: dict[str, Any], text: str) -> Messages:
        """The short scoring conversation of a `prompt` (see above) for the free text `text`."""
        if not self.prompt:
            raise ValueError(f"score {self.field} has no prompt of its own; it is read after the task's prompt")
        user = self.prompt.format(**inputs, text_block=delimit(self.text_label, clean_input(text)))
        return [{"role": "system", "content": system}, {"role": "user", "content": user},
                {"role": "assistant", "content": self.label}]

    def fields(self, dist) -> dict[str, float]:
        return {f"{self.field}_expected": round(dist.expected, 6), f"{self.field}_entropy": round(dist.entropy, 6)}


@dataclass(frozen=True)
class Task:
    name: str
    system: str
    template: str  # str.format template over the task's prepared inputs
    parse: Callable[[str, dict[str, Any]], dict[str, Any]]
    params: SamplingParams = field(default_factory=SamplingParams)
    max_attempts: int = 3  # tries per input when the caller gives none
    # tries per input whatever the caller gives (`generation.max_attempts`): a strict parser of a
    # short output needs more samples than the daily default, and they are cheap
    min_attempts: int = 1
    rules_version: str = "1"  # bump when the parser's rules change
    reply_prefix: str = ""  # the start of the answer, given to the model and re-attached before parsing
    score: ScoreSpec | None = None
    # an input key whose value caps max_new_tokens for that input (ReLSum's configured length cap)
    max_tokens_key: str | None = None
    # best of N: the greedy output and N-1 sampled ones are parsed, and `pick` returns the index of
    # the valid value it keeps and that value (it may trim it, or raise InvalidOutput when none will do)
    candidates: int = 1
    pick: Callable[[list[dict[str, Any]], dict[str, Any]], tuple[int, dict[str, Any]]] | None = None
    token_cap: int | None = None  # set by `capped`: max_new_tokens cut for a benchmark or smoke run

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise ValueError(f"task {self.name}: candidates must be >= 1")
        if self.min_attempts < 1:
            raise ValueError(f"task {self.name}: min_attempts must be >= 1, got {self.min_attempts}")
        if (self.candidates > 1) != (self.pick is not None):
            raise ValueError(f"task {self.name}: best of N needs both candidates > 1 and a pick function")
        if self.candidates > 1 and self.score is not None:
            raise ValueError(f"task {self.name}: best of N is not defined for scored tasks")

    @property
    def prompt_version(self) -> str:
        score = (f"{self.score.label}{self.score.choices}{self.score.cut_at}{self.score.reading}{self.score.lead}"
                 f"{self.score.prompt}{self.score.text_label if self.score.prompt else ''}" if self.score else "")
        best = f"best of {self.candidates} by {self.pick.__module__}.{self.pick.__qualname__}" if self.pick else ""
        # decoding settings that change what is written (only when set, so other tasks keep their versions)
        decoding = f"\nrepetition penalty {self.params.repetition_penalty}" if self.params.repetition_penalty != 1.0 else ""
        decoding += f"\nmax_new_tokens cap {self.token_cap}" if self.token_cap else ""
        text = (f"{self.name}\n{self.system}\n{self.template}\n{self.reply_prefix}\n{score}\n{self.rules_version}{best}"
                f"\noutput rules {OUTPUT_RULES_VERSION}{decoding}")
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def capped(self, max_new_tokens: int | None) -> "Task":
        """This task with every generation cut at `max_new_tokens` (None: unchanged). The cap is
        part of the prompt version, so capped outputs are never mistaken for full ones."""
        if not max_new_tokens:
            return self
        params = dataclasses.replace(self.params, max_new_tokens=min(self.params.max_new_tokens, max_new_tokens))
        return dataclasses.replace(self, params=params, token_cap=max_new_tokens)

    def answer(self, continuation: str) -> str:
        """The whole answer: the reply prefix and the model's continuation of it, which the backends
        return stripped, so joined by a space ("Reasoning:" + "It is mild." -> "Reasoning: It is
        mild.", as the SFT targets write it)."""
        return f"{self.reply_prefix} {continuation}" if self.reply_prefix else continuation

    def content(self, answer: str) -> str:
        """The answer without the reply prefix that began it (the inverse of `answer`)."""
        return answer[len(self.reply_prefix):].lstrip() if self.reply_prefix and answer.startswith(self.reply_prefix) else answer

    def messages(self, inputs: dict[str, Any], reply: str | None = None) -> Messages:
        msgs = [{"role": "system", "content": self.system}, {"role": "user", "content": self.template.format(**inputs)}]
        reply = self.reply_prefix if reply is None else reply
        if reply:
            msgs.append({"role": "assistant", "content": reply})
        return msgs

    def score_messages(self, inputs: dict[str, Any], text: str) -> Messages:
        """The conversation the score of free text `text` (already cut) is read after: the score's
        own short prompt when it has one, else the task's prompt with `text`, the lead line and the
        label as the reply. Generation reads it here and a score student is trained here. In its own
        prompt the score reads the answer's content, without the reply prefix that began it."""
        spec = self.score
        if spec is None:
            raise ValueError(f"task {self.name} has no score")
        if spec.prompt:
            return spec.messages(self.system, inputs, self.content(text).strip())
        return self.messages(inputs, reply=spec.reply(text, inputs))


def _with_score(backend: Backend, task: Task, inputs: Sequence[dict[str, Any]], texts: list[str]):
    """Free texts completed with the task's score: '<text>\n<label> <the choice `reading` names>',
    and the distributions the choices were read from."""
    spec = task.score
    assert spec is not None
    cut = []
    for text in texts:
        found = re.compile(spec.cut_at, re.IGNORECASE).search(text, len(task.reply_prefix))
        cut.append(text[: found.start()] if found else text)
    dists = backend.score([task.score_messages(x, c) for x, c in zip(inputs, cut)], spec.choices)
    return [f"{spec.reply(c, x)} {d.pick(spec.reading)}" for c, x, d in zip(cut, inputs, dists)], dists


def drop_label(text: str, label: str) -> str:
    """`text` without a leading `<label>:` (a regex) and the markup that followed it: "Summary: -
    Good fit" -> "Good fit". A list marker or heading after the label is only at the start of a
    line, where `strip_markup` finds it, once the label is gone."""
    return strip_markup(re.sub(rf"^\s*(?:{label})\s*:\s*", "", text, flags=re.IGNORECASE))


def clean_output(text: str) -> str:
    """Markup stripped; contact details and a copied data-block label are failures, never silently
    kept (the task's retries and candidates sample another output)."""
    out = strip_markup(text)
    if contains_pii(out):
        raise InvalidOutput("output contains an e-mail address or phone number")
    if DATA_NOTE in out.lower():
        raise InvalidOutput(f"output echoes a data block of the prompt ('{DATA_NOTE}')")
    return out


def _generate(backend: Backend, task: Task, inputs: Sequence[dict[str, Any]], params: SamplingParams) -> list:
    """One backend call per distinct token cap (one call when the task has no per-input cap)."""
    if task.max_tokens_key is None:
        return backend.generate([task.messages(x) for x in inputs], params)
    caps = [min(int(x.get(task.max_tokens_key) or params.max_new_tokens), params.max_new_tokens) for x in inputs]
    out: list = [None] * len(inputs)
    for cap in sorted(set(caps)):
        idx = [i for i, c in enumerate(caps) if c == cap]
        capped = dataclasses.replace(params, max_new_tokens=cap)
        for i, g in zip(idx, backend.generate([task.messages(inputs[i]) for i in idx], capped)):
            out[i] = g
    return out


def _best_of(task: Task, texts: list[str], inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(text, value) of the candidate `task.pick` chooses among the valid ones."""
    valid, reasons = [], []
    for text in texts:
        try:
            valid.append((text, task.parse(text, inputs)))
        except InvalidOutput as exc:
            reasons.append(str(exc))
    if not valid:
        raise InvalidOutput(reasons[0])
    assert task.pick is not None
    index, chosen = task.pick([v for _, v in valid], inputs)
    return valid[index][0], chosen


def run_task(backend: Backend, task: Task, inputs: Sequence[dict[str, Any]], attempts: int | None = None) -> list[TaskResult]:
    """Generate for every input; invalid outputs are retried (sampling, new seed) up to the bound
    (`attempts`, else the task's `max_attempts`; never fewer than its `min_attempts`)."""
    limit = max(attempts or task.max_attempts, task.min_attempts)
    results: list[TaskResult | None] = [None] * len(inputs)
    tokens = [0] * len(inputs)
    last_raw = [""] * len(inputs)
    last_reason: list[str | None] = [None] * len(inputs)
    pending = list(range(len(inputs)))
    for attempt in range(1, limit + 1):
        if not pending:
            break
        params = task.params
        if attempt > 1:  # greedy decoding would repeat the same invalid text
            params = dataclasses.replace(params, temperature=0.7, top_p=0.95, seed=attempt)
        gens = _generate(backend, task, [inputs[i] for i in pending], params)
        texts = [task.answer(g.text) for g in gens]
        dists: list = [None] * len(texts)
        if task.score is not None:
            texts, dists = _with_score(backend, task, [inputs[i] for i in pending], texts)
        others = [_generate(backend, task, [inputs[i] for i in pending],
                            dataclasses.replace(params, temperature=0.8, top_p=0.95, seed=100 * attempt + k))
                  for k in range(1, task.candidates)]
        still = []
        for row, (i, g, text, dist) in enumerate(zip(pending, gens, texts, dists)):
            tokens[i] += g.completion_tokens + sum(o[row].completion_tokens for o in others)
            last_raw[i] = text
            try:
                if others:
                    text, value = _best_of(task, [text] + [task.answer(o[row].text) for o in others], inputs[i])
                else:
                    value = task.parse(text, inputs[i])
            except InvalidOutput as exc:
                last_reason[i] = str(exc)
                still.append(i)
                continue
            if dist is not None:
                value = {**value, **task.score.fields(dist)}
            # raw = the whole completion after any reply prefix, score included: a teacher's SFT target
            results[i] = TaskResult("ok", value, task.content(text), None, attempt, tokens[i])
        pending = still
    for i in pending:
        results[i] = TaskResult("failed", None, last_raw[i], last_reason[i], limit, tokens[i])
    return [r for r in results if r is not None]
