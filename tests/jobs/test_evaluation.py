"""Generation metrics and the evaluation report."""

import pandas as pd
import pytest

from generator.metrics import rouge_l
from jobs.features.ground_truth import leave_one_out_means, rating_metrics


def test_rouge_l_matches_hand_computed_values():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge_l("", "anything") == 0.0
    # LCS("a b c d", "a c d e") = 3 -> P = 3/4, R = 3/4
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    # LCS = 2 of 2 candidate and 4 reference tokens: P = 1, R = 0.5, F = 2/3
    assert rouge_l("A, b!", "a x b y") == pytest.approx(2 / 3)


def test_validity_weighs_only_the_failures_of_the_generator_it_scores():
    import pandas as pd

    from jobs.evaluation import failures_of

    f = pd.DataFrame({"task": ["sumforu_persona"] * 4 + ["rpo"], "model_id": ["m"] * 4 + ["m"],
                      "adapter_version": ["base", "base", "base", "v1", "base"],
                      "prompt_version": ["new", "old", "old", "new", "new"]})
    assert failures_of(f, "sumforu_persona", "m", "base", "new") == 1  # not the old prompt's, v1's or rpo's
    assert failures_of(f, "sumforu_persona", "m", "base", "old") == 2
    assert failures_of(f, "sumforu_persona", "m", "v1", "old") == 0


def test_rating_baselines_are_leave_one_out():
    reviews = pd.DataFrame({"user_id": ["u", "u", "v"], "product_id": ["a", "b", "a"], "rating": [5.0, 3.0, 1.0]})
    loo = leave_one_out_means(reviews, "user_id").set_index(["user_id", "product_id"]).baseline
    assert loo[("u", "a")] == 3.0 and loo[("u", "b")] == 5.0 and pd.isna(loo[("v", "a")])
    pred = pd.DataFrame({"user_id": ["u", "v"], "product_id": ["a", "a"], "predicted_rating": [4, 1], "actual_rating": [5.0, 1.0]})
    m = {name: v for name, v, _ in rating_metrics(pred, reviews)}
    assert m["mae"] == pytest.approx(0.5) and m["rmse"] == pytest.approx((0.5) ** 0.5)
    # user mean: u/a -> 3 (err 2); v has no other review -> the global mean of the other reviews,
    # (5 + 3) / 2 = 4 (err 3)
    assert m["user_mean_mae"] == pytest.approx(2.5)
    # item mean: u/a -> v's 1 (err 4); v/a -> u's 5 (err 4)
    assert m["item_mean_mae"] == pytest.approx(4.0)
    # global mean, leave-one-out: u/a -> (3 + 1) / 2 = 2 (err 3); v/a -> 4 (err 3)
    assert m["global_mean_mae"] == pytest.approx(3.0) and m["global_mean_rmse"] == pytest.approx(3.0)
    # predictions 4, 1 rank the pairs as the actual 5, 1 do; one of two predictions is the mode
    assert m["spearman"] == pytest.approx(1.0) and m["mode_share"] == 0.5 and m["actual_mode_share"] == 0.5


def test_evaluate_generation_and_report(generated_lake, tmp_path, spark):
    import shutil

    from jobs.evaluation import evaluate_generation
    from jobs.report import write_report
    from tests.conftest import SMALL_LAKE, make_lake

    lake0, _ = generated_lake
    shutil.copytree(lake0.root, tmp_path / "lake")
    lake = make_lake(tmp_path / "lake", spark, orchestration__report_dir=str(tmp_path / "reports"), **SMALL_LAKE)
    evaluate_generation(lake, "2024-05-01")
    m = lake.read_pandas("eval.generation_metrics")
    validity = m[m.metric == "validity"].set_index("task").value
    assert set(validity.index) >= {"relsum", "sumforu_summary", "exp3rt_rating", "rpo"}
    assert ((validity > 0) & (validity <= 1)).all()
    assert (m[m.metric == "mean_chars"].value > 0).all()
    assert (m[m.metric == "distinct_2"].value.between(0, 1)).all() and set(m.metric) >= {"template_echo_share", "repeated_3gram_share"}
    rating = m[m.task == "exp3rt_rating"].set_index("metric")
    # every held-out pair has an actual rating (reranking candidates have none); the baselines are
    # computed on the same pairs
    rated = lake.read_pandas("gold.rating_predictions").actual_rating.notna().sum()
    assert rating.loc["mae", "n"] == rating.loc["user_mean_mae", "n"] == rated > 0
    assert {"spearman", "global_mean_mae", "item_mean_mae", "mode_share", "actual_mode_share"} <= set(rating.index)
    rpo = m[m.task == "rpo"].set_index("metric")
    assert {"rouge_l_vs_review", "generic_rouge_l_vs_review"} <= set(rpo.index)
    cosines = rpo.loc[["cosine_vs_review", "generic_cosine_vs_review"]]
    assert cosines.value.between(-1, 1).all() and (cosines.n == rpo.loc["rouge_l_vs_review", "n"]).all()
    relsum = m[m.task == "relsum"].set_index("metric")
    summaries = lake.read_pandas("gold.product_summaries")
    assert relsum.loc["support_mean", "n"] == len(summaries) > 0
    assert relsum.loc[["support_mean", "low_support_share", "title_share_mean", "restates_title_share"], "value"].between(0, 1).all()
    path = write_report(lake, "2024-05-01")
    text = path.read_text()
    assert path == tmp_path / "reports" / "2024-05-01" / "report.md"
    assert "## Generation" in text and "| relsum | base |" in text
    assert "## Signal" in text and "does it beat the user's mean rating?" in text
    assert "are the summary's words the product's own" in text
    assert (path.parent / "ratings.png").stat().st_size > 1000
    assert (path.parent / "lengths.png").stat().st_size > 1000
    # what the metrics are computed over: the newest outputs of every task, with their keys and scores
    sample = text.split("### Sample outputs")[1].split("\n## ")[0]
    rows = [line for line in sample.splitlines() if line.startswith("| ") and not line.startswith("| task")]
    assert {r.split(" | ")[0][2:] for r in rows} == {"relsum", "sumforu_persona", "sumforu_summary", "exp3rt_preferences",
                                                     "exp3rt_user_profile", "exp3rt_item_profile", "exp3rt_rating", "rpo"}
    assert any("predicted_rating " in r for r in rows) and any("suitability " in r for r in rows)
    # every section is scoped to the report's date: a later date without an evaluation names the
    # day that has one; an earlier date shows nothing written after it
    later = write_report(lake, "2024-05-02").read_text()
    assert "_No generation metrics on 2024-05-02; the latest before it is 2024-05-01" in later
    assert "| relsum | base |" not in later and "ratings.png" not in later
    early = write_report(lake, "2024-04-30")
    text = early.read_text()
    assert "_No generation metrics yet" in text and "_Nothing published by 2024-04-30._" in text
    assert not (early.parent / "lengths.png").exists() and not (early.parent / "ratings.png").exists()


def test_topk_reranking_ranks_the_held_out_product_among_never_reviewed_candidates():
    import math

    import pandas as pd

    from jobs.features.ground_truth import topk_metrics

    nan = float("nan")
    # u: held-out A (5 stars) among B-F, never reviewed; G was reviewed in train (actual 4), so it is
    # no candidate although the model rates it highest
    pred = pd.DataFrame({
        "user_id": ["u"] * 7 + ["v"] * 7 + ["w"] * 3,
        "product_id": list("ABCDEFG") + list("ABCDEFG") + list("ABC"),
        "predicted_rating_expected": [4.0, 4.5, 3.0, 2.0, 1.0, 0.5, 5.0] * 2 + [1.0, 2.0, 3.0],
        "actual_rating": [5.0] + [nan] * 5 + [4.0] + [2.0] + [nan] * 6 + [5.0, nan, nan],
    })
    train = [("x", p, 3.0) for p, n in zip("BCDEF", (3, 2, 2, 2, 2)) for _ in range(n)] + [("x", "A", 5.0), ("u", "G", 4.0)]
    split = pd.DataFrame([(*t, "train") for t in train] + [("u", "A", 5.0, "heldout"), ("v", "A", 2.0, "heldout"),
                                                            ("w", "A", 5.0, "heldout")],
                         columns=["user_id", "product_id", "rating", "split"])
    m = {name: (value, n) for name, value, n in topk_metrics(pred, split)}
    # only u qualifies: v rated its held-out product 2 stars, w has 3 candidates (not more than 5)
    assert m["topk_ndcg@5"] == (pytest.approx(1 / math.log2(3)), 1)  # A is second, after B
    assert m["topk_recall@5"] == (1.0, 1)
    assert m["popularity_topk_ndcg@5"] == (0.0, 1) and m["popularity_topk_recall@5"] == (0.0, 1)  # A is least reviewed
    assert m["item_mean_topk_ndcg@5"] == (1.0, 1)  # A's mean is 5, the others' 3
    assert topk_metrics(pred[pred.user_id == "w"], split) == []


def test_paired_ndcg_test_names_the_best_variant_and_whether_its_lead_is_real():
    from jobs.report import paired_ndcg_tests, queries_per_split

    rows = []
    for q in range(10):  # `good` puts the one relevant product first on every query, `bad` last
        for i in range(4):
            gain = 2.0 if i == 0 else 0.0
            rows += [{"variant": "good", "query_id": f"q{q}", "product_id": f"p{i}", "gain": gain, "score": -i},
                     {"variant": "bad", "query_id": f"q{q}", "product_id": f"p{i}", "gain": gain, "score": i}]
            if q < 3:  # `same` is `good` on 3 queries only: too few differ from it to test
                rows.append({"variant": "same", "query_id": f"q{q}", "product_id": f"p{i}", "gain": gain, "score": -i})
    out = paired_ndcg_tests(pd.DataFrame(rows)).set_index("vs")
    assert set(out.best) == {"good"}
    assert out.loc["bad", "queries"] == 10 and out.loc["bad", "queries that differ"] == 10
    assert out.loc["bad", "mean NDCG@5 difference"] > 0.5 and out.loc["bad", "p (Wilcoxon)"] < 0.01
    assert out.loc["same", "queries that differ"] == 0 and pd.isna(out.loc["same", "p (Wilcoxon)"])
    counts = pd.DataFrame([{"metric": "ndcg@5", "split": s, "n_queries": n} for s, n in (("all", 43), ("head", 18))])
    assert queries_per_split(counts).to_dict("records") == [{"all": 43, "head": 18}]


def test_paired_p_value_is_scipys_wilcoxon_on_the_rows_that_differ():
    from scipy.stats import wilcoxon

    from generator.metrics import paired_p_value

    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 0.5]
    b = [0.0, 0.5, 1.0, 2.5, 1.0, 2.0, 7.0, 1.0]  # one tie (7 = 7) is left out
    diff = [x - y for x, y in zip(a, b) if x != y]
    assert paired_p_value(a, b) == pytest.approx(wilcoxon(diff).pvalue)
    assert paired_p_value([1, 2, 3], [0, 0, 0]) != paired_p_value([1, 2, 3], [0, 0, 0])  # NaN: 3 rows cannot be tested


@pytest.mark.parametrize("p, verdict", [(0.01, "signal"), (0.2, "not significant"), (float("nan"), "not significant")])
def test_a_win_the_paired_test_does_not_support_is_not_significant(p, verdict):
    from jobs.features.spec import Signal

    s = Signal("mae", "lower", baseline="user_mean_mae", p_value="user_mean_mae_p")
    assert s.verdict({"mae": 0.3, "user_mean_mae": 0.4, "user_mean_mae_p": p})[2] == verdict
    # a loss is no signal whatever the test says; a missing baseline is not measured
    assert s.verdict({"mae": 0.5, "user_mean_mae": 0.4, "user_mean_mae_p": 0.001})[2] == "no signal"
    assert s.verdict({"mae": 0.3})[2] == "not measured"
    with pytest.raises(ValueError, match="p_value compares with a baseline"):
        Signal("spearman", "higher", threshold=0.0, p_value="x")


def test_rating_baselines_carry_the_paired_tests_p_value():
    from generator.metrics import paired_p_value

    # ten pairs; the user's other review says 3 for every pair, the prediction is right on 8 of them
    reviews = pd.DataFrame({"user_id": [f"u{i}" for i in range(10) for _ in (0, 1)],
                            "product_id": [p for i in range(10) for p in (f"a{i}", f"b{i}")],
                            "rating": [5.0, 3.0] * 10})
    pred = pd.DataFrame({"user_id": [f"u{i}" for i in range(10)], "product_id": [f"a{i}" for i in range(10)],
                         "predicted_rating": [5] * 8 + [4, 4], "actual_rating": [5.0] * 10})
    m = {name: v for name, v, _ in rating_metrics(pred, reviews)}
    assert m["user_mean_mae"] == pytest.approx(2.0) and m["mae"] == pytest.approx(0.2)
    assert m["user_mean_mae_p"] == pytest.approx(paired_p_value([0] * 8 + [1, 1], [2] * 10)) and m["user_mean_mae_p"] < 0.05


def test_a_profile_that_describes_its_owner_is_closer_to_their_held_out_reviews():
    """`owner_match_metrics` (real MiniLM): profiles in the owners' words win against every other
    profile; profiles that describe the task instead of the owner (as SmolLM2 wrote on the demo)
    do not, and the paired test and the binomial test against chance say so."""
    from jobs.features.ground_truth import owner_match_metrics
    from jobs.features.spec import Signal

    topics = {"u1": ("shampoo for dry curly hair", "This shampoo keeps my dry curls soft."),
              "u2": ("dark red matte lipstick", "The matte lipstick is a deep red and lasts."),
              "u3": ("unscented sunscreen for sensitive skin", "Sunscreen without scent, no rash on my skin."),
              "u4": ("long-lasting vanilla perfume", "The vanilla perfume lasts all day."),
              "u5": ("electric toothbrush with soft bristles", "Soft bristles on this electric toothbrush."),
              "u6": ("nail polish that does not chip", "This polish never chips on my nails.")}
    held = pd.DataFrame([(u, review + extra) for u, (_, review) in topics.items()
                         for extra in ("", " Would buy again.", " Arrived quickly.")], columns=["user_id", "review"])
    good = pd.Series({u: f"Liked: {p}. Disliked: none." for u, (p, _) in topics.items()})
    meta = pd.Series({u: f"The user profile is a summary of the preferences provided by {n} reviews."
                      for n, u in enumerate(topics, 2)})
    signals = (Signal("own_cosine", "higher", baseline="other_cosine", p_value="own_cosine_p"),
               Signal("own_top_share", "higher", baseline="chance_top_share", p_value="own_top_share_p"))

    m = {k: v for k, v, n in owner_match_metrics(good, held, "user_id")}
    assert m["own_top_share"] == 1.0 and m["chance_top_share"] == pytest.approx(1 / 6)
    assert m["own_cosine"] > m["other_cosine"] + 0.2 and m["own_cosine_p"] < 0.05 and m["own_top_share_p"] < 0.05
    assert [s.verdict(m)[2] for s in signals] == ["signal", "signal"]
    m = {k: v for k, v, n in owner_match_metrics(meta, held, "user_id")}
    assert [s.verdict(m)[2] for s in signals] != ["signal", "signal"]
    assert abs(m["own_cosine"] - m["other_cosine"]) < 0.05
    # an owner without held-out reviews is a candidate, never a row; one profile alone is not measured
    rows = owner_match_metrics(pd.concat([good, pd.Series({"u7": "Liked: hair dryer."})]), held, "user_id")
    assert dict((k, n) for k, _, n in rows)["own_cosine"] == 18
    assert owner_match_metrics(good.iloc[:1], held, "user_id") == []
