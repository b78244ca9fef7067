"""Publishing: ranking, joins and the checks that keep a bad score out of the tables."""
from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from etl.publish import (
    build_score_tables,
    check_probabilities,
    collect_model_runs,
    join_fraud_scores,
    publish_scores,
    rank_recommendations,
)
from etl.warehouse import create_warehouse_engine, read_frame

DS = date(2026, 2, 4)


def test_rank_recommendations_keeps_the_top_k_per_user_and_scenario_by_purchase_probability():
    scores = pl.DataFrame({
        "user_id": [1, 1, 1, 2, 1, 1],
        "item_id": [10, 11, 12, 10, 10, 11],
        "scenario": ["search", "search", "search", "any", "cart", "cart"],
        "p_click": [0.5, 0.4, 0.9, 0.1, 0.3, 0.3],
        "p_purchase": [0.2, 0.3, 0.1, 0.05, 0.1, 0.2],
    })
    ranked = rank_recommendations(scores, DS, "v1", top_k=2)
    assert ranked.select("user_id", "scenario", "item_id", "rank").rows() == [
        (1, "cart", 11, 1), (1, "cart", 10, 2), (1, "search", 11, 1), (1, "search", 10, 2), (2, "any", 10, 1),
    ]


def test_model_runs_hold_the_overall_rows_as_all_and_each_scenario_by_name():
    summary = {
        "model_name": "multitask", "model_version": "v1",
        "metrics": [{"task": "click", "metric": "auc", "value": 0.8, "n_rows": 30}],
        "scenario_metrics": [
            {"task": "click", "metric": "auc", "value": 0.7, "n_rows": 10, "scenario": "cart"},
            {"task": "click", "metric": "auc", "value": 0.85, "n_rows": 20, "scenario": "search"},
        ],
    }
    runs = collect_model_runs("run-1", DS, [summary])
    assert runs.select("task", "scenario", "value", "n_rows").rows() == [
        ("click", "all", 0.8, 30), ("click", "cart", 0.7, 10), ("click", "search", 0.85, 20),
    ]


def test_fraud_scores_must_cover_every_order_of_the_day():
    mtl = pl.DataFrame({"order_id": [1, 2, 3], "split": ["score", "score", "eval"], "p_fraud": [0.1, 0.2, 0.3]})
    lgbm = pl.DataFrame({"order_id": [1], "split": ["score"], "p_fraud": [0.15]})
    with pytest.raises(ValueError, match=r"score_order_fraud: 1 orders .* lack a score"):
        join_fraud_scores(mtl, lgbm, DS, "v")
    joined = join_fraud_scores(mtl, lgbm.vstack(pl.DataFrame({"order_id": [2], "split": ["score"], "p_fraud": [0.25]})), DS, "v")
    assert joined.select("order_id", "p_fraud_mtl", "p_fraud_lgbm").rows() == [(1, 0.1, 0.15), (2, 0.2, 0.25)]


def test_out_of_range_or_missing_probabilities_are_refused_naming_table_and_column():
    frame = pl.DataFrame({"p_negative": [0.2, float("nan"), None, 1.5]})
    with pytest.raises(ValueError, match=r"score_review_sentiment\.p_negative: 3 values outside \[0, 1\]"):
        check_probabilities(frame, "score_review_sentiment", ["p_negative"])


def _write_predictions(model_dir, *, with_orders: bool) -> None:
    predictions = model_dir / "predictions"
    predictions.mkdir(parents=True)
    # Two days of evaluation reviews: only day D's review is published.
    pl.DataFrame({"review_id": [5, 6], "split": ["eval", "eval"], "p_negative": [0.7, 0.1]}).write_parquet(predictions / "reviews.parquet")
    (model_dir.parent / "features").mkdir(exist_ok=True)
    pl.DataFrame({"review_id": [5, 6], "created_at": [datetime(2026, 2, 4, 9), datetime(2026, 2, 3, 9)]}).write_parquet(
        model_dir.parent / "features" / "reviews.parquet")
    pl.DataFrame({"item_id": [1], "split": ["eval"], "listed_category": ["toys"], "predicted_category": ["books"],
                  "confidence": [0.9]}).write_parquet(predictions / "items.parquet")
    if with_orders:
        pl.DataFrame({"order_id": [1], "split": ["score"], "p_fraud": [0.1]}).write_parquet(predictions / "orders.parquet")


def test_a_deployment_without_clicks_or_fraud_labels_publishes_only_what_it_has(tmp_path, sqlite_url):
    _write_predictions(tmp_path / "mtl", with_orders=False)
    multitask = {"model_name": "multitask", "model_version": "mtl-1", "output_dir": str(tmp_path / "mtl"),
                 "metrics": [{"task": "review", "metric": "auc", "value": 0.8, "n_rows": 1}]}
    serving = {"multitask": {"review": multitask, "category": multitask}}
    tables, skipped = build_score_tables(DS, ["review", "category"], tmp_path / "features", serving)
    assert set(tables) == {"score_review_sentiment", "score_item_category"}
    assert set(skipped) == {"score_user_item", "score_order_fraud"}
    assert tables["score_review_sentiment"]["review_id"].to_list() == [5]  # only day D's reviews

    summary = publish_scores(sqlite_url, DS, "run-1", ["review", "category"], tmp_path / "features", serving, [multitask])
    assert summary.rows == {"score_review_sentiment": 1, "score_item_category": 1, "model_runs": 1}
    engine = create_warehouse_engine(sqlite_url)
    with engine.connect() as conn:
        published = read_frame(conn, "SELECT * FROM score_item_category", table="score_item_category")
    engine.dispose()
    assert published.select("item_id", "listed_category", "predicted_category", "model_version").rows() == [(1, "toys", "books", "mtl-1")]


def test_the_fraud_task_without_a_baseline_is_an_error_not_a_silent_gap(tmp_path):
    _write_predictions(tmp_path / "mtl", with_orders=True)
    multitask = {"model_version": "mtl-1", "output_dir": str(tmp_path / "mtl")}
    with pytest.raises(ValueError, match="LightGBM baseline produced no scores"):
        build_score_tables(DS, ["fraud"], tmp_path / "features", {"multitask": {"fraud": multitask}})


def test_a_day_is_published_whole_or_not_at_all(tmp_path, warehouse_url):
    # The last table of the day (model_runs) fails to write: the score tables written before it in
    # the same publish must roll back too, so readers keep the whole previous day, not a mix.
    _write_predictions(tmp_path / "mtl", with_orders=False)
    serving_of = lambda version: {  # noqa: E731
        "model_name": "multitask", "model_version": version, "output_dir": str(tmp_path / "mtl"),
        "metrics": [{"task": "review", "metric": "auc", "value": 0.8, "n_rows": 1}],
    }
    objectives, features = ["review", "category"], tmp_path / "features"
    first = serving_of("mtl-1")
    publish_scores(warehouse_url, DS, "run-1", objectives, features, {"multitask": dict.fromkeys(objectives, first)}, [first])
    second = serving_of("mtl-2")
    with pytest.raises(Exception, match="(?i)unique|duplicate"):  # the same model_runs row twice: a key violation
        publish_scores(warehouse_url, DS, "run-2", objectives, features, {"multitask": dict.fromkeys(objectives, second)}, [second, second])
    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn:
        versions = {
            table: read_frame(conn, f"SELECT DISTINCT model_version FROM {table}")["model_version"].to_list()
            for table in ("score_review_sentiment", "score_item_category", "model_runs")
        }
    engine.dispose()
    assert versions == {"score_review_sentiment": ["mtl-1"], "score_item_category": ["mtl-1"], "model_runs": ["mtl-1"]}
