"""Publishing the serving version that rankers read, and reading it back."""

import shutil

import pytest

from jobs.publish import PublishRefused, publish
from jobs.quality import run_gate
from jobs.serving import product_views
from tests.conftest import SMALL_LAKE, make_lake


@pytest.fixture
def gen_copy(generated_lake, tmp_path, spark):
    lake0, _ = generated_lake
    shutil.copytree(lake0.root, tmp_path / "lake")
    return make_lake(tmp_path / "lake", spark, **SMALL_LAKE)


def test_publish_needs_a_passed_gold_gate_then_serves_each_products_summary(gen_copy):
    lake = gen_copy
    with pytest.raises(PublishRefused, match="gold quality gate has not passed"):
        publish(lake, "2024-05-01")
    assert not lake.exists("serving.product_summaries")
    assert run_gate(lake, "gold", "2024-05-01").success
    report = publish(lake, "2024-05-01")
    gold = lake.read_pandas("gold.product_summaries")
    assert report.committed and report.products == gold.product_id.nunique() == report.from_current_generator
    serving = lake.read_pandas("serving.product_summaries")
    assert sorted(serving.product_id) == sorted(gold.product_id.unique())
    # the serving row is the gold row, with its provenance
    merged = serving.merge(gold, on=["product_id", "input_hash"], suffixes=("", "_gold"))
    assert len(merged) == len(serving) and (merged.summary == merged.summary_gold).all()

    pid = serving.product_id.iloc[0]
    view = product_views(lake, [pid])[pid]
    assert view.summary == serving.summary.iloc[0] and "serving.product_summaries v0" in view.summary_source
    assert view.text.endswith(view.summary)

    again = publish(lake, "2024-05-01")  # same content: the serving version does not move
    assert not again.committed and again.version == report.version
