"""Parsing and validation of single input records, as plain Python.

Each parser takes one raw record and returns rows for the target tables, or raises `Rejected`
with a reason that lands in `bronze.quarantine`. Nothing here knows about Spark or files.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from typing import Any

import orjson

from generator.markup import html_to_text
from precis.errors import Rejected


def sha_hex(text: str | bytes, n: int = 32) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:n]


def decode_utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"invalid UTF-8 at byte {exc.start}") from None


def parse_json_object(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Rejected(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise Rejected("invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise Rejected(f"not a JSON object (got {type(obj).__name__})")
    try:  # the standard library accepts escaped lone surrogates ("\ud83d"), which no table can store
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Rejected(f"invalid Unicode: a lone surrogate {exc.object[exc.start]!r} in a string") from None
    except RecursionError:
        raise Rejected("invalid JSON: nested too deeply") from None
    return obj


def parse_json_record(raw: bytes) -> dict[str, Any]:
    """Raw line -> JSON object. orjson on the fast path; on failure the standard library re-parses
    to give a precise reason (or accepts what orjson refuses, such as NaN)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return parse_json_object(decode_utf8(raw))
    if not isinstance(obj, dict):
        raise Rejected(f"not a JSON object (got {type(obj).__name__})")
    return obj


def canonical_json(obj: Any) -> str:
    """Key order and whitespace do not change a record's identity: sorted keys, compact, UTF-8
    (byte-identical to json.dumps(sort_keys=True, ensure_ascii=False, separators=(",", ":")))."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):  # integers beyond 64 bits, NaN
        return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------- text cleaning
def clean_html(text: str | None) -> str | None:
    """Plain text from an HTML-ish description (generator.markup: parsed, never regex-stripped;
    block tags become line breaks; escaped markup does not come back to life). None and blank stay None."""
    if text is None:
        return None
    return html_to_text(text, lines=True) or None


# ---------------------------------------------------------------- reviews
def _nonblank_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    value = value.strip()
    return value or None


def _rating(value: Any, field: str) -> float:
    if isinstance(value, bool) or value is None:
        raise Rejected(f"rating '{field}' is missing or not a number ({value!r})")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise Rejected(f"rating '{field}' is not a number ({value[:40]!r})") from None
    if not isinstance(value, (int, float)) or math.isnan(value):
        raise Rejected(f"rating '{field}' is not a number ({value!r})")
    if not 1 <= value <= 5:
        raise Rejected(f"rating '{field}' is {value:g}, outside 1-5")
    return float(value)


_MAX_COUNT = 2**63 - 1


def _count_or_none(value: Any, field: str) -> int | None:
    """A vote count: `vote` in 2018 is a string like "1,234"; `helpful_vote` in 2023 is an int.
    Absent, blank or non-numeric text is None; a number that is no count (negative, infinite,
    fractional, beyond 64 bits) is rejected."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        digits = value.replace(",", "").strip()
        if not (digits.isascii() and digits.isdigit()):  # "²".isdigit() is True, int("²") fails
            return None
        value = int(digits)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if not math.isfinite(value) or value != int(value):
            raise Rejected(f"'{field}' is {value!r}, not a count")
        value = int(value)
    if not isinstance(value, int):
        return None
    if not 0 <= value <= _MAX_COUNT:
        raise Rejected(f"'{field}' is {value}, outside 0-{_MAX_COUNT}")
    return value


def _timestamp(value: Any, unit_seconds: float) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = float(value) * unit_seconds
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _images(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    urls: list[str] = []
    for item in value:
        if isinstance(item, str):
            urls.append(item)
        elif isinstance(item, dict):  # 2023: {"small_image_url": ..., "large_image_url": ...}
            url = item.get("large_image_url") or item.get("medium_image_url") or item.get("small_image_url")
            if isinstance(url, str):
                urls.append(url)
    return urls or None


def review_schema_of(obj: dict[str, Any]) -> str:
    if "reviewerID" in obj or "overall" in obj or "reviewText" in obj:
        return "amazon2018"
    if "user_id" in obj or "rating" in obj or "helpful_vote" in obj:
        return "amazon2023"
    raise Rejected("unknown review schema: neither 2018 (reviewerID, overall) nor 2023 (user_id, rating) fields")


def parse_review(obj: dict[str, Any]) -> dict[str, Any]:
    """One Amazon review object (2018 or 2023 schema) -> a `bronze.reviews` row, without the
    provenance columns the caller adds. The id is a hash of the whole record, so exact duplicates
    collapse and distinct reviews of the same user, product and time stay distinct."""
    schema = review_schema_of(obj)
    if schema == "amazon2018":
        user, product = obj.get("reviewerID"), obj.get("asin")
        user_field, rating_field = "reviewerID", "overall"
        title, text = obj.get("summary"), obj.get("reviewText")
        when = _timestamp(obj.get("unixReviewTime"), 1.0)
        votes = _count_or_none(obj.get("vote"), "vote")
        verified = obj.get("verified")
        images = _images(obj.get("image"))
        parent = None
    else:
        user, product = obj.get("user_id"), obj.get("asin")
        user_field, rating_field = "user_id", "rating"
        title, text = obj.get("title"), obj.get("text")
        when = _timestamp(obj.get("timestamp"), 0.001)
        votes = _count_or_none(obj.get("helpful_vote"), "helpful_vote")
        verified = obj.get("verified_purchase")
        images = _images(obj.get("images"))
        parent = _nonblank_str(obj.get("parent_asin"))
    user, product = _nonblank_str(user), _nonblank_str(product)
    if user is None:
        raise Rejected(f"missing user id ({user_field})")
    if product is None:
        raise Rejected("missing product id (asin)")
    rating = _rating(obj.get(rating_field), rating_field)
    title, text = _nonblank_str(title), _nonblank_str(text)
    if title is None and text is None:
        raise Rejected("neither review text nor title")
    style = obj.get("style")
    return {
        "review_id": sha_hex(canonical_json(obj)),
        "user_id": user,
        "product_id": product,
        "parent_product_id": parent,
        "rating": rating,
        "title": title,
        "text": text,
        "review_time": when,
        "helpful_votes": votes,
        "verified": verified if isinstance(verified, bool) else None,
        "style": canonical_json(style) if isinstance(style, dict) and style else None,
        "images": images,
        "source_schema": schema,
    }


# ---------------------------------------------------------------- relevance judgments
ESCI_GAINS = {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}
CROWDFLOWER_GAINS = {1: 0.0, 2: 1 / 3, 3: 2 / 3, 4: 1.0}


def query_key(query: str) -> str:
    return " ".join(query.lower().split())


def crowdflower_product_id(title: str, description: str | None) -> str:
    """CrowdFlower has no product ids; the same title and description is the same product."""
    return "cf-" + sha_hex(f"{title}\x1f{description or ''}", 16)


def parse_crowdflower(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One CrowdFlower CSV row -> (product row, judgment row)."""
    native_id = _nonblank_str(row.get("id"))
    query = _nonblank_str(row.get("query"))
    title = _nonblank_str(row.get("product_title"))
    if native_id is None:
        raise Rejected("missing id")
    if query is None:
        raise Rejected("missing query")
    if title is None:
        raise Rejected("missing product_title")
    raw_label = _nonblank_str(row.get("median_relevance"))
    try:
        value = float(raw_label) if raw_label is not None else None
    except ValueError:
        value = None
    label = int(value) if value in CROWDFLOWER_GAINS else None  # inf and nan are no key: no int() of them
    if label is None:
        raise Rejected(f"median_relevance must be 1, 2, 3 or 4 (got {(raw_label or '')[:40]!r})")
    variance_raw = _nonblank_str(row.get("relevance_variance"))
    try:
        variance = float(variance_raw) if variance_raw is not None else None
    except ValueError:
        variance = None
    if variance is not None and not math.isfinite(variance):
        variance = None
    description_raw = row.get("product_description") or None
    product_id = crowdflower_product_id(title, description_raw)
    product = {
        "product_id": product_id,
        "title": title,
        "description_raw": description_raw,
        "description": clean_html(description_raw),
        "bullets": None,
        "brand": None,
        "color": None,
        "locale": None,
        "source": "crowdflower",
    }
    judgment = {
        "judgment_id": f"crowdflower:{native_id}",
        "query_id": "cf-" + sha_hex(query_key(query), 16),
        "query": query,
        "product_id": product_id,
        "label": str(label),
        "gain": CROWDFLOWER_GAINS[label],
        "label_variance": variance,
        "split": None,
        "source": "crowdflower",
    }
    return product, judgment


def _esci_product(fields: dict[str, Any], product_id: str) -> dict[str, Any] | None:
    title = _nonblank_str(fields.get("product_title", fields.get("title")))
    if title is None:
        return None
    description_raw = fields.get("product_description", fields.get("description")) or None
    if description_raw is not None and not isinstance(description_raw, str):
        description_raw = str(description_raw)
    return {
        "product_id": product_id,
        "title": title,
        "description_raw": description_raw,
        "description": clean_html(description_raw),
        "bullets": clean_html(_nonblank_str(fields.get("product_bullet_point", fields.get("bullets")))),
        "brand": _nonblank_str(fields.get("product_brand", fields.get("brand"))),
        "color": _nonblank_str(fields.get("product_color", fields.get("color"))),
        "locale": _nonblank_str(fields.get("product_locale", fields.get("locale"))),
        "source": "esci",
    }


def parse_esci_example(row: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """One ESCI example (CSV or Parquet row) -> (product row if it carries product text, judgment)."""
    example_id = _nonblank_str(row.get("example_id"))
    query = _nonblank_str(row.get("query"))
    product_id = _nonblank_str(row.get("product_id"))
    label = _nonblank_str(row.get("esci_label"))
    if example_id is None:
        raise Rejected("missing example_id")
    if query is None:
        raise Rejected("missing query")
    if product_id is None:
        raise Rejected("missing product_id")
    if label is None or label.upper() not in ESCI_GAINS:
        raise Rejected(f"esci_label must be one of E, S, C, I (got {label!r})")
    label = label.upper()
    qid = _nonblank_str(row.get("query_id"))
    judgment = {
        "judgment_id": f"esci:{example_id}",
        "query_id": f"esci-{qid}" if qid is not None else "esci-" + sha_hex(query_key(query), 16),
        "query": query,
        "product_id": product_id,
        "label": label,
        "gain": ESCI_GAINS[label],
        "label_variance": None,
        "split": _nonblank_str(row.get("split")),
        "source": "esci",
    }
    return _esci_product(row, product_id), judgment


def parse_vespa_product(obj: dict[str, Any]) -> dict[str, Any]:
    """One Vespa feed line {"put": "id:...", "fields": {...}} -> a product row."""
    fields = obj.get("fields")
    if not isinstance(fields, dict):
        raise Rejected("Vespa feed line without a 'fields' object")
    product_id = _nonblank_str(fields.get("id"))
    if product_id is None and isinstance(obj.get("put"), str):
        product_id = _nonblank_str(obj["put"].rsplit("::", 1)[-1])
    if product_id is None:
        raise Rejected("missing product id (fields.id)")
    product = _esci_product(fields, product_id)
    if product is None:
        raise Rejected("missing product title (fields.title)")
    return product
