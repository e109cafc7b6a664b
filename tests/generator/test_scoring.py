"""Scores from the model's distribution: the trie arithmetic on a hand-made distribution, and the
transformers backend against a brute-force computation with the real SmolLM2-135M."""

import math

import pytest

from generator.scoring import ScoreDistribution, choice_distributions, spellings

# a toy vocabulary: digits are their own ids, 9 is the space token
_TOKENS = {"1": [1], "2": [2], "10": [1, 0], " 1": [9, 1], " 2": [9, 2], " 10": [9, 1, 0]}


def _encode(text: str) -> list[int]:
    return _TOKENS[text]


def test_expected_value_and_entropy_of_a_hand_made_distribution():
    """choices 1, 2, 10. After the prompt: '1' 0.5, '2' 0.2, space 0.2 (and 0.1 on other tokens).
    After '1': '0' 0.4. After space: '1' 0.5, '2' 0.5. After space '1': '0' 0.0.
    Masses: '1' = 0.5 x 0.6 + 0.2 x 0.5 x 1.0 = 0.4; '10' = 0.5 x 0.4 = 0.2; '2' = 0.2 + 0.2 x 0.5 = 0.3."""
    table = {(): {1: 0.5, 2: 0.2, 9: 0.2}, (1,): {0: 0.4}, (9,): {1: 0.5, 2: 0.5}, (9, 1): {}}
    seen = []

    def next_logprobs(requests, wanted):
        seen.extend(requests)
        return [{t: math.log(table[prefix][t]) for t in want if table[prefix].get(t)} for (_, prefix), want in zip(requests, wanted)]

    seqs = spellings(["1", "2", "10"], _encode)
    dist, = choice_distributions(1, ["1", "2", "10"], seqs, next_logprobs)
    assert dist.probs == pytest.approx({"1": 0.4 / 0.9, "2": 0.3 / 0.9, "10": 0.2 / 0.9})
    assert dist.expected == pytest.approx((0.4 * 1 + 0.3 * 2 + 0.2 * 10) / 0.9)  # 3.333...
    assert dist.rounded == "2"  # nearest to 3.33 among 1, 2, 10
    assert dist.mode == "1"
    assert dist.median == "2"  # cumulative 0.44 at 1, 0.78 at 2
    assert dist.pick("rounded-expected") == "2"
    # a skewed distribution: the expected value rounds to 4, but 5 has the least expected absolute error
    skewed = ScoreDistribution({"3": 0.1, "4": 0.35, "5": 0.55})
    assert skewed.expected == pytest.approx(4.45) and skewed.rounded == "4" and skewed.pick("median") == "5"
    with pytest.raises(ValueError, match="unknown score reading"):
        skewed.pick("mean")
    p = [0.4 / 0.9, 0.3 / 0.9, 0.2 / 0.9]
    assert dist.entropy == pytest.approx(-sum(x * math.log2(x) for x in p))
    assert sorted(prefix for _, prefix in seen) == [(), (1,), (9,), (9, 1)]  # one request per trie node


def test_distribution_edge_cases():
    assert ScoreDistribution.from_masses({"1": 0.0, "2": 0.0}).probs == {"1": 0.5, "2": 0.5}
    certain = ScoreDistribution.one_hot(["1", "2", "3"], "3")
    assert certain.expected == 3 and certain.entropy == 0 and certain.rounded == "3"
    assert ScoreDistribution({"4": 0.5, "5": 0.5}).rounded == "5"  # ties go up
    uniform = ScoreDistribution.from_masses({str(i): 1.0 for i in range(1, 6)})
    assert uniform.entropy == pytest.approx(math.log2(5)) and uniform.expected == pytest.approx(3.0)
    with pytest.raises(ValueError, match="sum to 1"):
        ScoreDistribution({"1": 0.7, "2": 0.7})
    with pytest.raises(ValueError, match="same tokens"):
        spellings(["1", "01"], lambda s: [1] if s.strip() in ("1", "01") else [9])


def test_transformers_score_matches_brute_force_on_the_real_model():
    """Batched, left-padded trie passes equal one unpadded forward per full choice sequence."""
    import torch

    from generator.backends import load_backend
    from generator.models import SMOLLM2, resolve
    from jobs.config import load_config

    backend = load_backend("transformers", resolve(SMOLLM2, load_config(None, environ={}).cache_dir), "smollm2",
                           batch_size=4, threads=2, dtype="float32")
    prompts = [[{"role": "user", "content": "I loved this shampoo, it is perfect."}, {"role": "assistant", "content": "Rating (1-10):"}],
               [{"role": "user", "content": "Broke after a day. Awful."}, {"role": "assistant", "content": "Rating (1-10):"}]]
    choices = [str(i) for i in range(1, 11)]
    dists = backend.score(prompts, choices)

    tok, model = backend.tokenizer, backend.model
    encode = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    seqs = spellings(choices, encode)
    for messages, dist in zip(prompts, dists):
        prompt = encode(backend.render(messages))
        masses = {c: 0.0 for c in choices}
        for s, c in seqs.items():
            with torch.inference_mode():
                logp = torch.log_softmax(model(torch.tensor([prompt + list(s)])).logits[0].float(), -1)
            p = math.exp(sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(s)))
            if s in {q[:-1] for q in seqs if len(q) > len(s)}:  # '1' continued by '0' is '10', not '1'
                p *= 1 - math.exp(float(logp[len(prompt) + len(s) - 1, encode("0")[0]]))
            masses[c] += p
        expected = ScoreDistribution.from_masses(masses)
        assert dist.probs == pytest.approx(expected.probs, abs=1e-4)
    assert dists[0].expected != pytest.approx(dists[1].expected, abs=1e-3)  # it varies with the input
