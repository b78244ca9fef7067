"""Labels, candidates and point-in-time features on tiny inline frames you can check by hand."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import polars as pl
import pytest

from etl.candidates import build_candidates
from etl.config import FeatureConfig
from etl.features import add_trailing_sums
from etl.labels import label_impressions, label_orders
from etl.order_features import build_order_features, count_other_users_before

T0 = datetime(2026, 3, 10, 12, 0)


def _clicks(rows: list[tuple]) -> pl.LazyFrame:
    return pl.LazyFrame(
        rows,
        schema={"event_id": pl.Int64, "event_time": pl.Datetime("us"), "user_id": pl.Int64, "item_id": pl.Int64,
                "session_id": pl.String, "event_type": pl.String, "position": pl.Int32},
        orient="row",
    ).with_columns(pl.lit("home_feed").alias("scenario"))


def _order_lines(rows: list[tuple]) -> pl.LazyFrame:
    return pl.LazyFrame(
        rows, schema={"order_id": pl.Int64, "user_id": pl.Int64, "item_id": pl.Int64, "created_at": pl.Datetime("us"),
                      "quantity": pl.Int32, "unit_price": pl.Float64}, orient="row",
    )


def test_label_impressions_clicked_needs_a_later_click_in_the_same_session():
    clicks = _clicks([
        (1, T0, 10, 100, "s1", "impression", 1),
        (2, T0 + timedelta(minutes=1), 10, 100, "s1", "click", None),
        (3, T0, 10, 101, "s1", "impression", 2),
        (4, T0 - timedelta(minutes=5), 10, 101, "s1", "click", None),  # before the impression
        (5, T0, 11, 100, "s2", "impression", 1),
        (6, T0 + timedelta(minutes=1), 11, 100, "other", "click", None),  # other session
    ])
    labelled = label_impressions(clicks, _order_lines([])).collect().sort("event_id")
    assert labelled["event_id"].to_list() == [1, 3, 5]
    assert labelled["clicked"].to_list() == [1, 0, 0]
    assert labelled["converted"].to_list() == [0, 0, 0]


def test_label_impressions_converts_only_within_24_hours_of_the_click():
    clicks = _clicks([
        (1, T0, 10, 100, "s1", "impression", 1),
        (2, T0 + timedelta(minutes=1), 10, 100, "s1", "click", None),
        (3, T0, 11, 100, "s2", "impression", 1),
        (4, T0 + timedelta(minutes=1), 11, 100, "s2", "click", None),
        (5, T0, 12, 100, "s3", "impression", 1),  # never clicked but orders anyway
    ])
    lines = _order_lines([
        (900, 10, 100, T0 + timedelta(hours=3), 1, 9.5),
        (901, 11, 100, T0 + timedelta(hours=25), 1, 9.5),  # too late
        (902, 12, 100, T0 + timedelta(hours=1), 1, 9.5),
    ])
    labelled = label_impressions(clicks, lines).collect().sort("event_id")
    assert labelled["clicked"].to_list() == [1, 1, 0]
    assert labelled["converted"].to_list() == [1, 0, 0]


def test_trailing_sums_exclude_the_day_itself_and_everything_after():
    daily = pl.LazyFrame({
        "user_id": [1, 1, 1, 1, 2],
        "day": [date(2026, 3, 1), date(2026, 3, 5), date(2026, 3, 8), date(2026, 3, 9), date(2026, 3, 8)],
        "clk": [1.0, 2.0, 4.0, 100.0, 7.0],
    })
    pairs = pl.LazyFrame({"user_id": [1, 1, 2, 3], "as_of": [date(2026, 3, 9), date(2026, 3, 2), date(2026, 3, 9), date(2026, 3, 9)]})
    out = add_trailing_sums(pairs, daily, ["user_id"], ["clk"], "u", windows=(7, 28)).collect().sort(["user_id", "as_of"])
    rows = {(r["user_id"], r["as_of"]): (r["u_clk_7d"], r["u_clk_28d"]) for r in out.iter_rows(named=True)}
    # As of 9 March: 7-day window is 2..8 March (2 + 4), 28-day window adds 1 March; 9 March itself is excluded.
    assert rows[(1, date(2026, 3, 9))] == (6.0, 7.0)
    assert rows[(1, date(2026, 3, 2))] == (1.0, 1.0)
    assert rows[(2, date(2026, 3, 9))] == (7.0, 7.0)
    assert rows[(3, date(2026, 3, 9))] == (0.0, 0.0)


def test_trailing_sums_do_not_change_when_a_future_row_arrives():
    base = {"user_id": [1, 1], "day": [date(2026, 3, 1), date(2026, 3, 3)], "clk": [1.0, 2.0]}
    pairs = pl.LazyFrame({"user_id": [1], "as_of": [date(2026, 3, 4)]})
    before = add_trailing_sums(pairs, pl.LazyFrame(base), ["user_id"], ["clk"], "u").collect()
    future = {k: v + [v[-1]] for k, v in base.items()}
    future["day"][-1] = date(2026, 3, 4)  # same day as the event: not yet known
    after = add_trailing_sums(pairs, pl.LazyFrame(future), ["user_id"], ["clk"], "u").collect()
    assert before.equals(after)


def _orders(rows: list[tuple]) -> pl.LazyFrame:
    return pl.LazyFrame(rows, schema={"order_id": pl.Int64, "user_id": pl.Int64, "created_at": pl.Datetime("us"),
                                      "amount": pl.Float64, "payment_method": pl.String, "device_id": pl.String,
                                      "ip_address": pl.String, "channel": pl.String, "ship_country": pl.String,
                                      "status": pl.String}, orient="row")


ORDERS = [
    (1, 10, T0, 20.0, "card", "devA", "ip1", "web", "DE", "completed"),
    (2, 11, T0 + timedelta(hours=1), 30.0, "card", "devA", "ip2", "web", "DE", "completed"),
    (3, 12, T0 + timedelta(hours=2), 40.0, "card", "devA", "ip2", "web", "FR", "completed"),
    (4, 10, T0 + timedelta(hours=3), 80.0, "card", "devA", "ip1", "web", "DE", "completed"),
]
USERS = pl.LazyFrame({"user_id": [10, 11, 12], "signup_at": [T0 - timedelta(days=100), T0, T0], "country": ["DE", "DE", "DE"],
                      "birth_year": [1980, None, None]}, schema_overrides={"birth_year": pl.Int32})
ORDER_ITEMS = pl.LazyFrame({"order_id": [1, 2, 3, 4], "item_id": [100, 100, 101, 102], "quantity": [1, 1, 1, 1],
                            "unit_price": [20.0, 30.0, 40.0, 80.0]}, schema_overrides={"quantity": pl.Int32})


def test_other_users_on_a_device_count_only_earlier_users():
    counts = dict(count_other_users_before(_orders(ORDERS), "device_id").collect().iter_rows())
    assert counts == {1: 0, 2: 1, 3: 2, 4: 2}


def test_order_features_are_point_in_time():
    features = build_order_features(_orders(ORDERS), ORDER_ITEMS, USERS).collect().sort("order_id")
    assert features["user_orders_24h"].to_list() == [0, 0, 0, 1]
    assert features["amount_vs_user_mean"].to_list() == [1.0, 1.0, 1.0, 4.0]
    assert features["country_mismatch"].to_list() == [0, 0, 1, 0]
    future = ORDERS + [(5, 12, T0 + timedelta(days=1), 999.0, "card", "devA", "ip1", "web", "US", "completed")]
    with_future = build_order_features(_orders(future), ORDER_ITEMS, USERS).collect().sort("order_id").head(4)
    assert features.drop("created_at").equals(with_future.drop("created_at"))


def test_label_orders_respects_label_time_and_maturity():
    ds = date(2026, 3, 30)
    cutoff = datetime(2026, 3, 31)
    config = FeatureConfig(maturity_days=14, fraud_eval_days=3)
    orders = _orders([
        (1, 10, cutoff - timedelta(days=25), 10.0, "card", "d", "i", "web", "DE", "completed"),  # mature, unlabelled
        (2, 10, cutoff - timedelta(days=25), 10.0, "card", "d", "i", "web", "DE", "completed"),  # fraud, label known
        (3, 10, cutoff - timedelta(days=25), 10.0, "card", "d", "i", "web", "DE", "completed"),  # fraud, label after cutoff
        (4, 10, cutoff - timedelta(days=5), 10.0, "card", "d", "i", "web", "DE", "completed"),   # young, unlabelled
        (5, 10, cutoff - timedelta(days=5), 10.0, "card", "d", "i", "web", "DE", "completed"),   # young, fraud known
        (6, 10, cutoff - timedelta(days=15), 10.0, "card", "d", "i", "web", "DE", "completed"),  # mature holdout
        (7, 10, cutoff - timedelta(hours=2), 10.0, "card", "d", "i", "web", "DE", "completed"),  # day D
    ])
    labels = pl.LazyFrame({"order_id": [2, 3, 5], "is_fraud": [True, True, True],
                           "labeled_at": [cutoff - timedelta(days=1), cutoff + timedelta(hours=1), cutoff - timedelta(days=1)]})
    out = label_orders(orders, labels, ds, config).collect().sort("order_id")
    assert out["is_fraud"].to_list() == [0, 1, 0, None, 1, 0, None]
    assert out["split"].to_list() == ["train", "train", "train", "unused", "train", "eval", "score"]


def test_candidates_cover_active_users_and_skip_bought_items():
    ds = date(2026, 3, 10)
    clicks = _clicks([
        (1, datetime(2026, 3, 9, 10), 10, 100, "s", "click", None),
        (2, datetime(2026, 3, 9, 10), 11, 101, "s", "click", None),
        (3, datetime(2026, 3, 10, 9), 10, 102, "s", "impression", 1),  # user 10 active on day D
    ])
    items = pl.LazyFrame({"item_id": [100, 101, 102], "category": ["a", "a", "b"]})
    lines = _order_lines([(1, 10, 101, datetime(2026, 3, 9, 12), 1, 5.0)])
    out = build_candidates(clicks, lines, items, ds, FeatureConfig(items_per_category=5, popular_items=5)).collect()
    assert set(out["user_id"].to_list()) == {10}
    assert set(out["item_id"].to_list()) == {100}  # 101 already bought, 102 never clicked or bought


def test_review_examples_join_text_label_negatives_and_split_on_day_d():
    from etl.features import build_review_examples

    reviews = pl.LazyFrame(
        [(1, None, 7, 100, 1, "Péssimo", "não chegou", datetime(2026, 3, 9, 8)),
         (2, None, 7, 100, 5, None, None, datetime(2026, 3, 10, 8)),
         (3, None, 7, 999, 2, None, "meh", datetime(2026, 3, 10, 9))],
        schema={"review_id": pl.Int64, "order_id": pl.Int64, "user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Int16,
                "title": pl.String, "body": pl.String, "created_at": pl.Datetime("us")},
        orient="row",
    )
    items = pl.LazyFrame({"item_id": [100], "category": ["books"]})
    out = build_review_examples(reviews, items, date(2026, 3, 10)).collect().sort("review_id")
    assert out["text"].to_list() == ["Péssimo . não chegou", "", "meh"]
    assert out["negative"].to_list() == [1, 0, 1]
    assert out["split"].to_list() == ["train", "eval", "eval"]
    assert out["category"].to_list() == ["books", "books", "unknown"]


def test_features_of_a_deployment_with_only_items_and_images(tmp_path):
    from etl.build_features import build_features
    from etl.warehouse import TABLE_SCHEMAS

    extract_dir = tmp_path / "extract"
    extract_dir.mkdir()
    pl.DataFrame([(5, "bag", 1.0, 0, "a bag", datetime(2026, 3, 1)), (6, "coat", 2.0, 0, "a coat", datetime(2026, 3, 1))],
                 schema=TABLE_SCHEMAS["items"], orient="row").write_parquet(extract_dir / "items.parquet")
    pl.DataFrame([(5, b"png", datetime(2026, 3, 1))], schema=TABLE_SCHEMAS["item_images"], orient="row").write_parquet(
        extract_dir / "item_images.parquet")
    summary = build_features(extract_dir, tmp_path / "features", date(2026, 3, 10), sources=("items", "item_images"))
    assert summary.objectives_available == ["category"]
    manifest = json.loads((tmp_path / "features" / "manifest.json").read_text())
    assert manifest["objectives_available"] == ["category"]
    assert manifest["sources"] == ["items", "item_images"]
    assert (summary.impressions, summary.reviews, summary.items, summary.items_with_image) == (0, 0, 2, 1)
    items = pl.read_parquet(tmp_path / "features" / "items.parquet")
    assert items.select("item_id", "split").rows() == [(5, "eval"), (6, "train")]
    with pytest.raises(FileNotFoundError, match="clicks"):
        build_features(extract_dir, tmp_path / "features", date(2026, 3, 10), sources=("items", "clicks"))
