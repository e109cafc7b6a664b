"""Ingestion on real Spark, real Delta tables and the real sample files."""

import gzip
import json

import pandas as pd
import pytest

from jobs.ingest.job import ingest_relevance, ingest_reviews
from jobs.ingest.sources import IngestError, Unit, iter_jsonl, plan_jsonl_units
from jobs.lake.sql import run_sql
from tests.conftest import BEAUTY, CROWDFLOWER, ESCI_CSV, ESCI_PARQUET, ESCI_VESPA, make_lake

DS = "2024-03-01"


def counts(lake):
    return {t: lake.count(t) for t in ("bronze.reviews", "bronze.products", "bronze.judgments", "bronze.quarantine")}


def test_beauty_sample_reviews(lake):
    report = ingest_reviews(lake, [str(BEAUTY)], DS, category="All Beauty")
    assert report.duplicates == 1027 and report.quarantined == 0
    assert report.written["bronze.reviews"] == 4242
    assert "1027 duplicates" in report.line() and "4242 new" in report.line()
    df = lake.read_pandas("bronze.reviews")
    assert (len(df), df.user_id.nunique(), df.product_id.nunique()) == (4242, 991, 85)
    # different reviews sharing user, product and time stay distinct
    groups = df.groupby(["user_id", "product_id", "review_time"]).size()
    assert (groups > 1).sum() == 34
    assert set(df.category) == {"All Beauty"} and set(df.source_schema) == {"amazon2018"}
    assert df.rating.between(1, 5).all() and (df.ds == DS).all()
    # the three readers agree
    assert lake.read("bronze.reviews").count() == 4242
    assert run_sql(lake, "select count(*) as n from bronze.reviews").n[0] == 4242


def test_reingest_same_or_other_date_changes_nothing(lake):
    ingest_reviews(lake, [str(BEAUTY)], DS)
    ingest_relevance(lake, [str(CROWDFLOWER)], "crowdflower", DS)
    before = counts(lake)
    versions = {t: lake.delta_table(t).version() for t in ("bronze.reviews", "bronze.products", "bronze.judgments")}
    # a file whose bytes were ingested before is not even parsed again (bronze.ingested_files)
    again = ingest_reviews(lake, [str(BEAUTY)], "2024-03-02")
    assert again.skipped == [str(BEAUTY)] and again.files == [] and again.written == {}
    assert "1 file(s) ingested before, not parsed again" in again.line()
    cf_again = ingest_relevance(lake, [str(CROWDFLOWER)], "crowdflower", DS)
    assert cf_again.skipped == [str(CROWDFLOWER)] and cf_again.records == {}
    ledger = lake.read_pandas("bronze.ingested_files").set_index("source")
    assert ledger.loc["reviews", "records"] == 5269 and ledger.loc["reviews", "path"] == str(BEAUTY.resolve())
    assert ledger.loc["crowdflower", "ds"] == DS and len(ledger) == 2
    assert counts(lake) == before
    assert {t: lake.delta_table(t).version() for t in versions} == versions
    # ... unless asked: parsed again, and still nothing new is stored
    lake.cfg.ingest.reparse = True
    try:
        forced = ingest_reviews(lake, [str(BEAUTY)], "2024-03-02")
    finally:
        lake.cfg.ingest.reparse = False
    assert forced.skipped == [] and forced.records["review"] == 5269 and forced.written["bronze.reviews"] == 0
    assert counts(lake) == before and len(lake.read_pandas("bronze.ingested_files")) == 2


def test_a_new_file_in_the_inbox_is_parsed_and_the_old_one_skipped(tmp_path, lake):
    import gzip

    old = tmp_path / "day1.jsonl"
    lines = gzip.decompress(BEAUTY.read_bytes()).decode().splitlines()
    old.write_text("\n".join(lines[:100]) + "\n")
    new = tmp_path / "day2.jsonl"
    new.write_text("\n".join(lines[100:130]) + "\n")
    ingest_reviews(lake, [str(old)], DS)
    report = ingest_reviews(lake, [str(old), str(new)], "2024-03-02")
    assert report.files == [str(new)] and report.skipped == [str(old)] and report.records["review"] == 30


def test_crowdflower(lake):
    report = ingest_relevance(lake, [str(CROWDFLOWER)], "crowdflower", DS)
    j = lake.read_pandas("bronze.judgments")
    assert (len(j), j.query_id.nunique(), j["query"].nunique()) == (6269, 163, 163)
    assert report.quarantined == 0
    assert sorted(j.gain.round(4).unique()) == [0.0, 0.3333, 0.6667, 1.0]
    p = lake.read_pandas("bronze.products")
    assert set(j.product_id) <= set(p.product_id)
    html = p[p.description_raw.fillna("").str.contains("<[a-zA-Z/][^>]*>", regex=True)]
    assert len(html) > 0 and not html.description.fillna("").str.contains("<[a-zA-Z/][^>]*>", regex=True).any()


def test_esci_csv_parquet_and_vespa(lake):
    ingest_relevance(lake, [str(ESCI_CSV), str(ESCI_PARQUET), str(ESCI_VESPA)], "esci", DS)
    j = lake.read_pandas("bronze.judgments")
    assert len(j) == 485 + 16
    fixture = j[j.source_file.str.endswith(".parquet")]
    assert fixture.label.value_counts().to_dict() == {"I": 7, "S": 6, "E": 3}
    assert set(fixture.gain) == {1.0, 0.1, 0.0}
    p = lake.read_pandas("bronze.products").set_index("product_id")
    assert set(fixture.product_id) <= set(p.index)  # titles came from the Vespa feed
    assert not p.description.dropna().str.contains("<br>").any()


def write_lines(path, lines, gz=False):
    data = b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n"
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


GOOD_2023 = {"rating": 4, "title": "ok", "text": "fine", "asin": "P1", "parent_asin": "P0", "user_id": "U1",
             "timestamp": 1588687728923, "helpful_vote": 0, "verified_purchase": True, "images": []}


def test_bad_records_are_quarantined_and_good_ones_kept(tmp_path, spark, caplog):
    lake = make_lake(tmp_path / "lake", spark, ingest__raw_max_chars="200")
    huge = json.dumps(dict(GOOD_2023, user_id=None, text="x" * 100_000))
    lines = [
        json.dumps(GOOD_2023),  # 1 ok
        "{not json",  # 2
        "[1, 2, 3]",  # 3
        b'{"user_id": "U\xff", "asin": "P", "rating": 5, "text": "t"}',  # 4
        json.dumps(dict(GOOD_2023, user_id=None)),  # 5
        json.dumps(dict(GOOD_2023, asin="")),  # 6
        json.dumps(dict(GOOD_2023, rating=7)),  # 7
        json.dumps(dict(GOOD_2023, rating="five")),  # 8
        json.dumps(dict(GOOD_2023, title="", text=None)),  # 9
        "",  # 10: blank lines are skipped, not quarantined
        huge,  # 11
        json.dumps(dict(GOOD_2023, user_id="U2")),  # 12 ok
    ]
    f = write_lines(tmp_path / "reviews_2023.jsonl.gz", lines, gz=True)
    with caplog.at_level("INFO", logger="jobs.ingest.job"):
        report = ingest_reviews(lake, [f], DS)
    assert report.written["bronze.reviews"] == 2 and report.quarantined == 9
    # one line per file, and a warning at once: 9 of 11 records is above quality.max_quarantine_share
    lines = [r.getMessage() for r in caplog.records if r.name == "jobs.ingest.job"]
    assert f"ingest {f}: 2 reviews; 9 quarantined (81.8%)" in lines
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "max_quarantine_share" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(f"ingest {f}: 81.8% of its records quarantined")
    assert any(m.startswith("ingest: parsed 11 records from 1 file(s)") for m in lines)
    q = lake.read_pandas("bronze.quarantine").set_index("source_line").sort_index()
    assert list(q.index) == [2, 3, 4, 5, 6, 7, 8, 9, 11]
    expect = {2: "invalid JSON", 3: "not a JSON object", 4: "invalid UTF-8", 5: "missing user id", 6: "missing product id",
              7: "outside 1-5", 8: "not a number", 9: "neither review text nor title", 11: "missing user id"}
    for line, reason in expect.items():
        assert reason in q.loc[line, "reason"], (line, q.loc[line, "reason"])
    assert q.loc[4, "raw"].startswith('{"user_id": "U\\xff"')  # bad byte kept visible
    assert len(q.loc[11, "raw"]) == 200 and q.loc[11, "raw_truncated"]
    assert (q.source_file == f).all() and (q.source == "reviews").all()
    r = lake.read_pandas("bronze.reviews")
    assert sorted(r.user_id) == ["U1", "U2"] and set(r.source_schema) == {"amazon2023"}
    # quarantine is idempotent too
    ingest_reviews(lake, [f], "2024-03-09")
    assert lake.count("bronze.quarantine") == 9 and lake.count("bronze.reviews") == 2


def test_bad_relevance_rows_are_quarantined(tmp_path, lake):
    f = tmp_path / "cf.csv"
    f.write_text(
        "id,query,product_title,product_description,median_relevance,relevance_variance\n"
        '1,shoes,Red shoe,"multi\nline <b>desc</b>",4,0\n'
        "2,shoes,Blue shoe,,7,0\n"
        "3,,Green shoe,,3,0\n"
        "4,shoes,Extra,field,2,0,oops\n"
        "5,shoes,Boot,,1,0.5\n"
    )
    report = ingest_relevance(lake, [str(f)], "crowdflower", DS)
    assert report.written["bronze.judgments"] == 2 and report.quarantined == 3
    q = lake.read_pandas("bronze.quarantine").set_index("source_line")
    assert q.loc[4, "reason"].startswith("median_relevance") and q.loc[5, "reason"] == "missing query"
    assert q.loc[6, "reason"] == "wrong number of CSV fields"  # line numbers count the multi-line field
    assert lake.read_pandas("bronze.products").set_index("title").loc["Red shoe", "description"] == "multi\nline desc"


def test_split_units_keep_exact_line_numbers(tmp_path):
    lines = [json.dumps(dict(GOOD_2023, user_id=f"U{i}")) for i in range(500)]
    f = write_lines(tmp_path / "big.jsonl", lines)
    units = plan_jsonl_units(tmp_path / "big.jsonl", split_bytes=4096)
    assert len(units) > 5
    got = [(n, raw) for u in units for n, raw in iter_jsonl(Unit(**u.to_dict()))]
    assert [n for n, _ in got] == list(range(1, 501))
    assert [json.loads(raw)["user_id"] for _, raw in got] == [f"U{i}" for i in range(500)]


def test_split_file_ingests_like_whole(tmp_path, spark):
    lines = [json.dumps(dict(GOOD_2023, user_id=f"U{i}")) for i in range(300)] + ["{bad"]
    f = write_lines(tmp_path / "r.jsonl", lines)
    lake = make_lake(tmp_path / "lake", spark, ingest__split_bytes="2048")
    report = ingest_reviews(lake, [f], DS)
    assert report.written["bronze.reviews"] == 300
    assert lake.read_pandas("bronze.quarantine").source_line.tolist() == [301]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: str(p / "missing.jsonl"), "no such file"),
        (lambda p: str(p), "not a regular file"),
        (lambda p: write_lines(p / "x.csv", ["a,b,c", "1,2,3"]), "no JSON object"),
        (lambda p: str(ESCI_PARQUET), "is a Parquet file"),
    ],
)
def test_unreadable_or_unknown_inputs_fail_without_commit(tmp_path, lake, make, match):
    good = str(BEAUTY)
    with pytest.raises(IngestError, match=match):
        ingest_reviews(lake, [good, make(tmp_path)], DS)
    assert not lake.exists("bronze.reviews")


def test_truncated_gzip_fails_without_commit(tmp_path, lake):
    ingest_reviews(lake, [str(BEAUTY)], DS)
    v = lake.delta_table("bronze.reviews").version()
    data = gzip.compress("\n".join(json.dumps(dict(GOOD_2023, user_id=f"N{i}")) for i in range(20000)).encode())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match="nothing was committed"):
        ingest_reviews(lake, [str(cut)], DS)
    assert lake.delta_table("bronze.reviews").version() == v and lake.count("bronze.reviews") == 4242
    assert not lake.exists("bronze.quarantine")


def test_relevance_format_errors(tmp_path, lake):
    with pytest.raises(IngestError, match="unknown relevance format"):
        ingest_relevance(lake, [str(CROWDFLOWER)], "msmarco", DS)
    with pytest.raises(IngestError, match="not a crowdflower CSV"):
        ingest_relevance(lake, [str(ESCI_CSV)], "crowdflower", DS)
    with pytest.raises(IngestError, match="only --format esci reads Parquet"):
        ingest_relevance(lake, [str(ESCI_PARQUET)], "crowdflower", DS)
    assert not lake.exists("bronze.judgments")


def test_empty_relevance_and_review_files_ingest_nothing_alike(tmp_path, lake):
    """An empty file is no error for either kind of input; it adds nothing."""
    for name in ("empty.csv", "empty.jsonl"):
        (tmp_path / name).write_text("")
    (tmp_path / "blank.csv.gz").write_bytes(gzip.compress(b"\n\n"))
    rel = ingest_relevance(lake, [str(tmp_path / "empty.csv"), str(tmp_path / "blank.csv.gz")], "crowdflower", DS)
    rev = ingest_reviews(lake, [str(tmp_path / "empty.jsonl")], DS)
    assert sum(rel.written.values()) == sum(rev.written.values()) == 0
    assert rel.records.get("judgment", 0) == rev.records.get("review", 0) == 0
    # next to a real file, an empty one changes nothing
    both = ingest_relevance(lake, [str(tmp_path / "empty.csv"), str(CROWDFLOWER)], "crowdflower", DS)
    assert both.records["judgment"] == 6269


POISON_REVIEWS = {  # line -> (raw record, quarantine reason)
    2: (b'{"user_id": "U", "asin": "P", "rating": 5, "text": "x \\ud83d"}', "lone surrogate"),
    3: (b'{"user_id": "U", "asin": "P", "rating": 5, "text": "t", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        "nested too deeply"),
    4: (b'{"reviewerID": "U", "asin": "P", "overall": 5, "reviewText": "t", "vote": Infinity}', "not a count"),
    5: ('{"reviewerID": "U", "asin": "P", "overall": 5, "reviewText": "t", "vote": "\u00b2"}'.encode(), None),  # kept
    6: (b'{"user_id": "U", "asin": "P", "rating": 5, "text": "t", "helpful_vote": 1e19}', "outside 0-"),
    7: (b'{"user_id": "U", "asin": "P", "rating": 5, "text": "t", "helpful_vote": 10000000000000000000}', "outside 0-"),
}


def test_every_poison_record_kind_is_quarantined_alone_and_the_file_ingests(tmp_path, lake):
    """One bad record never fails the file (or the other files of the command): each poison kind
    from the hardening issue lands in bronze.quarantine with its reason, the rest is stored. The
    file starts with a UTF-8 byte-order mark, which is not a bad record."""
    lines = [b"\xef\xbb\xbf" + json.dumps(GOOD_2023).encode()] + [raw for _, (raw, _) in sorted(POISON_REVIEWS.items())]
    lines.append(json.dumps(dict(GOOD_2023, user_id="U9")).encode())  # line 8
    f = write_lines(tmp_path / "poison.jsonl", lines)
    report = ingest_reviews(lake, [f, str(BEAUTY)], DS)
    bad = {line: reason for line, (_, reason) in POISON_REVIEWS.items() if reason}
    assert report.quarantined == len(bad)
    q = lake.read_pandas("bronze.quarantine").set_index("source_line")
    assert sorted(q.index) == sorted(bad)
    for line, reason in bad.items():
        assert reason in q.loc[line, "reason"], (line, q.loc[line, "reason"])
    mine = lake.read_pandas("bronze.reviews").query("source_file == @f").set_index("source_line")
    assert sorted(mine.index) == [1, 5, 8] and pd.isna(mine.loc[5, "helpful_votes"])
    assert lake.count("bronze.reviews") == 4242 + 3


def test_a_first_record_longer_than_the_sniffed_head_is_ingested(tmp_path, lake):
    long = dict(GOOD_2023, text="word " * 80_000)  # about 400 KiB on one line
    f = write_lines(tmp_path / "long.jsonl", [json.dumps(long), json.dumps(dict(GOOD_2023, user_id="U2"))])
    assert ingest_reviews(lake, [f], DS).written["bronze.reviews"] == 2


def test_poison_csv_rows_are_quarantined_and_a_bom_and_long_fields_are_fine(tmp_path, lake):
    header = "id,query,product_title,product_description,median_relevance,relevance_variance\n"
    rows = [
        "1,shoes,Red shoe,,4,0",
        "2,shoes,Blue shoe,,inf,0",  # poison label
        f'3,shoes,Long shoe,"{"y" * 200_000}",3,0',  # a field over the csv module's 128 KiB default
        "4,shoes,Odd shoe,,nan,0",
        "5,shoes,Boot,,2,inf",
    ]
    f = tmp_path / "cf.csv"
    f.write_bytes(b"\xef\xbb\xbf" + (header + "\n".join(rows) + "\n").encode())
    report = ingest_relevance(lake, [str(f)], "crowdflower", DS)
    assert report.written["bronze.judgments"] == 3 and report.quarantined == 2
    q = lake.read_pandas("bronze.quarantine").set_index("source_line")
    assert sorted(q.index) == [3, 5] and all(q.reason.str.startswith("median_relevance"))
    p = lake.read_pandas("bronze.products").set_index("title")
    assert len(p.loc["Long shoe", "description"]) == 200_000


def test_a_broken_input_names_its_file_and_last_good_line(tmp_path, lake):
    data = gzip.compress("\n".join(json.dumps(dict(GOOD_2023, user_id=f"N{i}")) for i in range(20000)).encode())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match=r"cut\.jsonl\.gz: reading failed after line \d+: EOFError"):
        ingest_reviews(lake, [str(cut)], DS)


def test_a_row_arrow_cannot_store_becomes_its_records_quarantine_row():
    """The safety net behind the parsers: a value no parser caught (here a lone surrogate planted
    in an already-parsed row) quarantines its record, not the batch."""
    from datetime import datetime, timezone

    from jobs.ingest.job import _SOURCE, Context, _Combiner

    ctx = Context("reviews", DS, datetime.now(timezone.utc), 100)
    good = {"target": "review", "review": {"review_id": "r1", "text": "fine"}, _SOURCE: ("f.jsonl", 1, b"{}")}
    bad = {"target": "review", "review": {"review_id": "r2", "text": "x \ud83d"}, _SOURCE: ("f.jsonl", 2, b'{"x": 1}')}
    rows = _Combiner("f.jsonl").batch([good, bad], ctx).to_pylist()
    assert [r["target"] for r in rows] == ["review", "quarantine"]
    assert rows[1]["quarantine"]["source_line"] == 2 and "cannot be stored" in rows[1]["quarantine"]["reason"]


def test_repeated_records_are_dropped_in_the_parse_tasks_and_counted_exactly(tmp_path, spark):
    """A re-delivered feed: 40 records, each repeated within a split unit and across units. The parse
    tasks drop a unit's later copies (`_Combiner`); the counts are those of every line, and each
    stored row is its key's first line, as without the combine."""
    records = [json.dumps(dict(GOOD_2023, user_id=f"U{i}")) for i in range(40)]
    lines = [records[i % 40] for i in range(40)] + [records[i // 3] for i in range(120)]  # 160 lines
    f = write_lines(tmp_path / "r.jsonl", lines)
    lake = make_lake(tmp_path / "lake", spark, ingest__split_bytes="4096")
    assert len(plan_jsonl_units(tmp_path / "r.jsonl", 4096)) > 3
    report = ingest_reviews(lake, [f], DS)
    assert (report.records["review"], report.distinct["review"], report.duplicates) == (160, 40, 120)
    assert report.per_file == {str(tmp_path / "r.jsonl"): 160} and report.written["bronze.reviews"] == 40
    stored = lake.read_pandas("bronze.reviews").sort_values("user_id")
    assert sorted(stored.source_line) == list(range(1, 41))  # each key's first line


def test_the_combiner_drops_a_units_later_copies_and_keeps_the_first_line(tmp_path):
    from datetime import datetime, timezone

    from jobs.ingest.job import DUPLICATES, Context, _to_batches

    record = json.dumps(GOOD_2023)
    f = write_lines(tmp_path / "r.jsonl", [record, json.dumps(dict(GOOD_2023, user_id="B")), record, "{bad", record])
    ctx = Context("reviews", DS, datetime.now(timezone.utc), 100)
    rows = [r for b in _to_batches(Unit(f, "jsonl"), ctx) for r in b.to_pylist()]
    kept = [(r["target"], (r["review"] or r["quarantine"] or {}).get("source_line")) for r in rows]
    assert kept == [("review", 1), ("review", 2), ("quarantine", 4), (DUPLICATES, None)]
    assert rows[-1][DUPLICATES] == {"of": "review", "source_file": f, "records": 2}


def test_past_its_key_limit_the_combiner_passes_copies_through():
    from datetime import datetime, timezone

    from jobs.ingest.job import _SOURCE, Context, _Combiner

    ctx = Context("reviews", DS, datetime.now(timezone.utc), 100)
    rows = [{"target": "review", "review": {"review_id": k, "source_line": i}, _SOURCE: ("f.jsonl", i, b"{}")}
            for i, k in enumerate("aabb", 1)]
    combine = _Combiner("f.jsonl", max_keys=1)
    assert combine.batch(rows, ctx).column("review").field("source_line").to_pylist() == [1, 3, 4]  # "a" only
    assert combine.batch(rows[:1], ctx).num_rows == 0  # "a" is remembered across batches
    assert combine.dropped["review"] == 2 and combine.tail()[0].column("duplicates").to_pylist()[0]["records"] == 2


def test_a_copy_of_a_row_arrow_cannot_store_is_quarantined_too():
    """The first copy becomes a quarantine row, so it passed nothing on: the second is checked and
    quarantined with its own line, as without the combine."""
    from datetime import datetime, timezone

    from jobs.ingest.job import _SOURCE, Context, _Combiner

    ctx = Context("reviews", DS, datetime.now(timezone.utc), 100)
    bad = {"review_id": "r2", "text": "x \ud83d"}
    rows = [{"target": "review", "review": dict(bad), _SOURCE: ("f.jsonl", i, b"{}")} for i in (1, 2)]
    rows.append({"target": "review", "review": {"review_id": "r3", "text": "ok"}, _SOURCE: ("f.jsonl", 3, b"{}")})
    out = _Combiner("f.jsonl").batch(rows, ctx).to_pylist()
    kinds = [(r["target"], r["quarantine"]["source_line"] if r["quarantine"] else r["review"]["review_id"]) for r in out]
    assert kinds == [("quarantine", 1), ("quarantine", 2), ("review", "r3")]
