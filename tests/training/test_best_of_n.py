"""Best-of-N selection: the kept candidate is the best under the reward averaged over every row of
its prompt, candidates `keep` refuses never count, and a prompt whose best does not beat the
baseline text keeps nothing. The reward here is a plain word-overlap function (any reward callable
in trl's form works; the ONNX ranker's runs in test_training)."""

from precis.errors import InvalidOutput
from training.best_of_n import by_prompt, select_best


def overlap_reward(prompts, completions, query, **_):
    """Share of the query's words in the completion, trl's reward form."""
    return [len(set(q.split()) & set(c.split())) / len(q.split()) for q, c in zip(query, completions)]


def keep_short(row, text):
    if len(text.split()) > 4:
        raise InvalidOutput(f"summary has {len(text.split())} words")
    return text.strip()


def test_best_of_n_keeps_the_best_mean_reward_over_a_products_queries_and_counts_the_rest():
    rows = [{"prompt": "p1", "query": "red lipstick"}, {"prompt": "p1", "query": "matte lipstick"},
            {"prompt": "p2", "query": "shampoo"}]
    samples = [["red lipstick", "matte lipstick case", "a matte red lipstick for you today"],  # 7 words: refused
               ["a bottle", "conditioner"]]
    sel = select_best(by_prompt(rows), samples, overlap_reward, keep_short, baseline="", eos="</s>")
    # p1: "red lipstick" scores (1 + 0.5) / 2 = 0.75, "matte lipstick case" (0.5 + 1) / 2 = 0.75: the first wins
    # ties; p2: nothing beats the empty baseline (0)
    assert sel.examples == [{"prompt": "p1", "completion": "red lipstick</s>"}]
    assert sel.prompts == 2 and sel.candidates == 5 and sel.not_better == 1
    assert sel.rejected == {"summary has N words": 1}
    m = sel.metrics()
    assert m["kept"] == 1 and m["reward_kept_mean"] == 0.75 and m["reward_baseline_mean"] == 0.0
    assert m["reward_candidates_mean"] == (0.75 + 0.75 + 0 + 0) / 4


def test_best_of_n_needs_one_candidate_list_per_prompt():
    import pytest

    with pytest.raises(ValueError, match="1 candidate lists for 2 prompts"):
        select_best(by_prompt([{"prompt": "a", "query": "x"}, {"prompt": "b", "query": "y"}]), [["x"]],
                    overlap_reward, keep_short)
