import json
from datetime import datetime, timezone

import pytest

from jobs.ingest import records as rec

R2018 = {
    "overall": 4.0,
    "verified": True,
    "reviewTime": "09 1, 2016",
    "reviewerID": "A3CIUOJXQ5VDQ2",
    "asin": "B0000530HU",
    "style": {"Size:": " 7.0 oz"},
    "reviewerName": "Shelly F",
    "reviewText": "As advertised. Reasonably priced",
    "summary": "Five Stars",
    "unixReviewTime": 1472688000,
    "vote": "1,234",
    "image": ["https://example.com/a.jpg"],
}
R2023 = {
    "rating": 5.0,
    "title": "Such a lovely scent",
    "text": "This spray is really nice.",
    "images": [{"small_image_url": "s.jpg", "large_image_url": "l.jpg"}],
    "asin": "B00YQ6X8EO",
    "parent_asin": "B00YQ6X8EO",
    "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ",
    "timestamp": 1588687728923,
    "helpful_vote": 2,
    "verified_purchase": True,
}


def test_2018_schema_fields():
    row = rec.parse_review(R2018)
    assert row["source_schema"] == "amazon2018"
    assert (row["user_id"], row["product_id"], row["rating"]) == ("A3CIUOJXQ5VDQ2", "B0000530HU", 4.0)
    assert row["title"] == "Five Stars" and row["text"].startswith("As advertised")
    assert row["helpful_votes"] == 1234
    assert row["review_time"] == datetime(2016, 9, 1, tzinfo=timezone.utc)
    assert json.loads(row["style"]) == {"Size:": " 7.0 oz"}
    assert row["images"] == ["https://example.com/a.jpg"]
    assert row["verified"] is True and row["parent_product_id"] is None


def test_2023_schema_fields():
    row = rec.parse_review(R2023)
    assert row["source_schema"] == "amazon2023"
    assert row["user_id"] == "AGKHLEW2SOWHNMFQIJGBECAF7INQ"
    assert row["parent_product_id"] == "B00YQ6X8EO"
    assert row["helpful_votes"] == 2
    assert row["review_time"] == datetime(2020, 5, 5, 14, 8, 48, 923000, tzinfo=timezone.utc)
    assert row["images"] == ["l.jpg"]


def test_review_id_is_content_identity():
    same = json.loads(json.dumps(dict(reversed(list(R2018.items())))))  # other key order
    assert rec.parse_review(same)["review_id"] == rec.parse_review(R2018)["review_id"]
    other = dict(R2018, reviewText="A different review, same user, product and time")
    assert rec.parse_review(other)["review_id"] != rec.parse_review(R2018)["review_id"]


@pytest.mark.parametrize(
    "obj, reason",
    [
        ({k: v for k, v in R2018.items() if k != "reviewerID"}, "missing user id"),
        (dict(R2018, reviewerID="  "), "missing user id"),
        ({k: v for k, v in R2023.items() if k != "asin"}, "missing product id"),
        (dict(R2018, overall=7), "outside 1-5"),
        (dict(R2018, overall=0), "outside 1-5"),
        (dict(R2018, overall="great"), "not a number"),
        (dict(R2018, overall=None), "not a number"),
        (dict(R2018, overall=True), "not a number"),
        (dict(R2023, rating=float("nan")), "not a number"),
        (dict(R2018, reviewText="", summary=None), "neither review text nor title"),
        ({"foo": 1}, "unknown review schema"),
    ],
)
def test_invalid_reviews_are_rejected_with_reason(obj, reason):
    with pytest.raises(rec.Rejected, match=reason):
        rec.parse_review(obj)


def test_title_only_review_is_kept():
    row = rec.parse_review(dict(R2018, reviewText=None))
    assert row["text"] is None and row["title"] == "Five Stars"


def test_numeric_string_rating_is_accepted():
    assert rec.parse_review(dict(R2018, overall="3"))["rating"] == 3.0


def test_raw_decoding_errors():
    with pytest.raises(rec.Rejected, match="invalid UTF-8 at byte 3"):
        rec.decode_utf8(b'{"a\xff":1}')
    with pytest.raises(rec.Rejected, match="invalid JSON"):
        rec.parse_json_object('{"overall": 5,')
    with pytest.raises(rec.Rejected, match=r"not a JSON object \(got list\)"):
        rec.parse_json_object("[1, 2]")


def test_clean_html():
    raw = "<b>Features</b><br> &#9679;Built-in&nbsp;carplay<script>alert(1)</script><ul><li>One</li><li>Two</li></ul>"
    clean = rec.clean_html(raw)
    assert "<" not in clean and "alert" not in clean
    assert clean.splitlines() == ["Features", "\u25cfBuilt-in carplay", "One", "Two"]
    assert rec.clean_html("   ") is None and rec.clean_html(None) is None


def test_crowdflower_gains_and_ids():
    row = {"id": "2", "query": "LED Christmas  lights", "product_title": "Lights", "product_description": "<p>x</p>",
           "median_relevance": "3", "relevance_variance": "0.471"}
    product, judgment = rec.parse_crowdflower(row)
    assert judgment["gain"] == pytest.approx(2 / 3) and judgment["label"] == "3"
    assert judgment["judgment_id"] == "crowdflower:2" and judgment["label_variance"] == 0.471
    assert product["description"] == "x" and product["description_raw"] == "<p>x</p>"
    assert judgment["product_id"] == product["product_id"]
    # the same query, differently cased and spaced, is the same query id
    _, j2 = rec.parse_crowdflower(dict(row, id="3", query="led christmas lights"))
    assert j2["query_id"] == judgment["query_id"]
    assert [rec.CROWDFLOWER_GAINS[i] for i in (1, 2, 3, 4)] == [0.0, pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0]
    for bad in ("5", "0", "2.5", "", "x"):
        with pytest.raises(rec.Rejected, match="median_relevance"):
            rec.parse_crowdflower(dict(row, median_relevance=bad))


def test_esci_labels_and_vespa_products():
    row = {"example_id": 7, "query": "q", "query_id": 535, "product_id": "B1", "esci_label": "s", "split": "test"}
    product, judgment = rec.parse_esci_example(row)
    assert product is None  # examples without product text give only the judgment
    assert (judgment["label"], judgment["gain"], judgment["query_id"]) == ("S", 0.1, "esci-535")
    assert {k: rec.ESCI_GAINS[k] for k in "ESCI"} == {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}
    with pytest.raises(rec.Rejected, match="esci_label"):
        rec.parse_esci_example(dict(row, esci_label="X"))
    vespa = {"put": "id:commerce:product::B2", "fields": {"title": "T", "description": "a<br>b", "brand": "Z"}}
    p = rec.parse_vespa_product(vespa)
    assert (p["product_id"], p["description"], p["brand"]) == ("B2", "a\nb", "Z")
    with pytest.raises(rec.Rejected, match="fields"):
        rec.parse_vespa_product({"put": "x"})


def test_fast_and_standard_json_paths_agree():
    raw = json.dumps(R2018).encode()
    assert rec.parse_json_record(raw) == json.loads(raw)
    canon = rec.canonical_json({"b": 1, "a": "é", "c": [1.5, None]})
    assert canon == json.dumps({"b": 1, "a": "é", "c": [1.5, None]}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert rec.canonical_json({"big": 2**70}) == '{"big":1180591620717411303424}'  # beyond orjson, same form
    with pytest.raises(rec.Rejected, match="invalid UTF-8 at byte 3"):
        rec.parse_json_record(b'{"a\xff":1}')
    with pytest.raises(rec.Rejected, match="invalid JSON"):
        rec.parse_json_record(b'{"overall": 5,')
    with pytest.raises(rec.Rejected, match="not a JSON object"):
        rec.parse_json_record(b'"just a string"')


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b'{"reviewerID": "U", "asin": "P", "overall": 5, "reviewText": "x \\ud83d"}', "lone surrogate"),
        (b'{"reviewerID": "U", "asin": "P", "overall": 5, "reviewText": "t", "style": ' + b"[" * 5000 + b"]" * 5000 + b"}",
         "nested too deeply"),
        (b'{"reviewerID": "U", "asin": "P", "overall": 5, "reviewText": "t", "vote": Infinity}', "not a count"),
        (b'{"user_id": "U", "asin": "P", "rating": 5, "text": "t", "helpful_vote": 1e19}', "outside 0-"),
        (b'{"user_id": "U", "asin": "P", "rating": 5, "text": "t", "helpful_vote": 10000000000000000000}', "outside 0-"),
        (b'{"user_id": "U", "asin": "P", "rating": 5, "text": "t", "helpful_vote": -3}', "outside 0-"),
    ],
    ids=["lone-surrogate", "deep-nesting", "vote-infinity", "helpful-1e19", "helpful-2^63", "helpful-negative"],
)
def test_poison_reviews_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(rec.Rejected, match=reason):
        rec.parse_review(rec.parse_json_record(raw))


def test_vote_text_that_is_no_ascii_number_is_no_count():
    assert rec.parse_review(dict(R2018, vote="²"))["helpful_votes"] is None  # "²".isdigit() is True
    assert rec.parse_review(dict(R2018, vote="12"))["helpful_votes"] == 12


@pytest.mark.parametrize("label", ["inf", "-inf", "nan", "4.5", "1e400"])
def test_crowdflower_labels_that_are_no_grade_are_rejected(label):
    row = {"id": "1", "query": "q", "product_title": "t", "median_relevance": label, "relevance_variance": "inf"}
    with pytest.raises(rec.Rejected, match="median_relevance"):
        rec.parse_crowdflower(row)
    assert rec.parse_crowdflower(dict(row, median_relevance="4.0"))[1]["label_variance"] is None  # inf variance
