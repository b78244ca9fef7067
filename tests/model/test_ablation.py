"""The ablation table and the oracle beside it: same rows for models and truth, blanks without truth,
and the whole run on a tiny demo warehouse."""

from __future__ import annotations

import dataclasses
import math
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from etl.config import FeatureConfig
from demo.oracle import TRUTH_TABLES, compare_with_oracle, compute_category_accuracy_vs_truth, compute_oracle_metrics
from demo.synthetic import generate_warehouse
from etl.warehouse import create_warehouse_engine, read_frame
from training.ablation import (
    build_ablation_table,
    format_table,
    prepare_features,
    run_ablation,
    same_steps_config,
    steps_per_epoch,
)
from training.config import MultiTaskConfig

START, DS = date(2026, 1, 1), date(2026, 1, 20)
WINDOW_DAYS = 14
FEATURES = FeatureConfig(maturity_days=5, fraud_eval_days=3)  # a 14-day window still has a fraud holdout


def rows(task: str, metric: str, value: float | None, n_rows: int = 10) -> list[dict]:
    return [{"task": task, "metric": metric, "value": value, "n_rows": n_rows}]


def test_table_has_one_row_per_task_in_task_order_with_blanks_where_nothing_was_measured() -> None:
    multi = (
        rows("click", "auc", 0.75)
        + rows("click", "log_loss", 0.3)
        + rows("fraud", "auc", 0.9, 50)
        + rows("category", "accuracy", 0.8, 20)
    )
    singles = {
        "click": rows("click", "auc", 0.70),
        "fraud": rows("fraud", "auc", 0.95, 50),
        "category": rows("category", "accuracy", 0.7, 20),
    }
    table = build_ablation_table(
        ["fraud", "category", "click"],
        multi,
        singles,
        lightgbm_metrics=rows("fraud", "auc", 0.93, 50),
        oracle_metrics=rows("click", "auc", 0.84) + rows("category", "accuracy", 0.97, 20),
        category_vs_true={"multi": {"value": 0.85, "n_rows": 20}, "single": {"value": 0.75, "n_rows": 20}},
    )
    assert table.select("task", "metric").rows() == [
        ("click", "auc"),
        ("category", "accuracy"),
        ("category", "accuracy_vs_true"),
        ("fraud", "auc"),
    ]
    click, category, vs_true, fraud = table.iter_rows(named=True)
    assert click["multi_minus_single"] == pytest.approx(0.05) and click["oracle"] == 0.84 and click["lightgbm"] is None
    assert fraud["multi_minus_single"] == pytest.approx(-0.05) and fraud["lightgbm"] == 0.93 and fraud["oracle"] is None
    assert category["oracle"] == 0.97 and (vs_true["single_task"], vs_true["multi_task"]) == (0.75, 0.85)
    assert table["n_rows"].to_list() == [10, 20, 20, 50]
    assert table["single_task_same_steps"].is_null().all()  # not given
    markdown = format_table(table)
    assert markdown.splitlines()[0].startswith("| task | metric | rows | single-task | single-task, same steps |")
    assert "| fraud | auc | 50 | 0.950 |  | 0.900 | -0.050 | 0.930 |  |" in markdown


def test_same_steps_configs_shrink_small_tasks_batches_to_the_joint_runs_steps_per_epoch() -> None:
    # One pass per kind and epoch, so the arithmetic below is about batch sizes alone.
    config = MultiTaskConfig(batch_size=1000, review_batch_size=256, item_batch_size=128, order_batch_size=256,
                             impression_ratio=1.0, order_ratio=1.0, review_ratio=1.0, item_ratio=1.0)
    n_train = {"click": 10_000, "purchase": 10_000, "review": 500, "category": 95, "fraud": 3000}
    assert steps_per_epoch(config, n_train) == 12  # fraud: 3000 / 256 -> 12 batches, more than 10 of impressions
    assert steps_per_epoch(config, {"review": 500}) == 2
    review = same_steps_config(config, "review", 500, 12)
    assert review.objectives == ("review",) and review.review_batch_size == 42  # ceil(500 / 12)
    assert same_steps_config(config, "category", 95, 12).item_batch_size == 8
    # The kind that sets the steps keeps its own batch size (and so its single-task model).
    assert same_steps_config(config, "fraud", 3000, 12) == dataclasses.replace(config, objectives=("fraud",))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A tiny demo warehouse (scale 0.2, 20 days) and day DS's features."""
    root = tmp_path_factory.mktemp("ablation_demo")
    warehouse_url = f"sqlite:///{root / 'warehouse.db'}"
    generate_warehouse(warehouse_url, START, DS, scale=0.2, seed=5)
    features_dir = prepare_features(warehouse_url, DS, root / "work", WINDOW_DAYS, feature_config=FEATURES)
    return warehouse_url, features_dir


def write_truth_as_predictions(warehouse_url: str, features_dir: Path, run_dir: Path) -> None:
    """Prediction files that ARE the truth: every model row must then equal its oracle row."""
    shutil.copytree(features_dir, run_dir / "features")
    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn:
        truth = {table: read_frame(conn, f"SELECT * FROM {table}", table=table) for table in TRUTH_TABLES}
        listed = read_frame(conn, "SELECT item_id, category FROM items", table="items")
    engine.dispose()
    for directory in ("multitask", "fraud_lgbm"):
        (run_dir / "models" / directory / "predictions").mkdir(parents=True)
    predictions = run_dir / "models" / "multitask" / "predictions"
    truth["truth_impressions"].select(
        "event_id", "p_click", (pl.col("p_click") * pl.col("p_convert")).alias("p_purchase")
    ).write_parquet(predictions / "impressions_eval.parquet")
    orders = truth["truth_orders"].with_columns(pl.lit("eval").alias("split"))
    for directory in ("multitask", "fraud_lgbm"):
        orders.write_parquet(run_dir / "models" / directory / "predictions" / "orders.parquet")
    truth["truth_reviews"].with_columns(pl.lit("eval").alias("split")).write_parquet(predictions / "reviews.parquet")
    truth["truth_items"].join(listed, on="item_id").select(
        "item_id",
        pl.col("category").alias("listed_category"),
        pl.col("true_category").alias("predicted_category"),
        pl.lit(0.9).alias("confidence"),
    ).write_parquet(predictions / "items.parquet")


def test_oracle_scores_the_same_rows_as_the_models(demo: tuple[str, Path], tmp_path: Path) -> None:
    warehouse_url, features_dir = demo
    run_dir = tmp_path / "run"
    write_truth_as_predictions(warehouse_url, features_dir, run_dir)
    comparison = compare_with_oracle(warehouse_url, run_dir)
    assert comparison.select("task", "model").rows() == [
        ("click", "multitask"),
        ("click", "oracle"),
        ("purchase", "multitask"),
        ("purchase", "oracle"),
        ("fraud", "multitask"),
        ("fraud", "fraud_lgbm"),
        ("fraud", "oracle"),
        ("review", "multitask"),
        ("review", "oracle"),
        ("category", "multitask"),
        ("category", "oracle"),
    ]
    for task, group in comparison.group_by("task"):
        assert group["n_rows"].n_unique() == 1 and group["n_rows"][0] > 0, task
        metrics = group.drop("task", "model").unique()  # the truth as a model scores exactly like the oracle
        assert metrics.height == 1, (task, group)
    category = comparison.filter(task="category", model="multitask").row(0, named=True)
    assert category["accuracy_vs_true"] == 1.0 and 0.8 < category["accuracy"] < 1.0  # a few items are mislabelled

    oracle = {(row["task"], row["metric"]): row for row in compute_oracle_metrics(warehouse_url, features_dir)}
    assert set(oracle) == {
        ("click", "auc"),
        ("purchase", "auc"),
        ("review", "auc"),
        ("category", "accuracy"),
        ("fraud", "auc"),
    }
    for (task, metric), row in oracle.items():
        expected = comparison.filter(task=task, model="oracle").row(0, named=True)
        assert row["value"] == expected[metric] and row["n_rows"] == expected["n_rows"], task
    assert compute_category_accuracy_vs_truth(warehouse_url, features_dir, run_dir / "models" / "multitask") == {
        "value": 1.0,
        "n_rows": category["n_rows"],
    }


def test_without_truth_tables_there_are_no_oracle_rows(demo: tuple[str, Path], tmp_path: Path) -> None:
    warehouse_url, features_dir = demo
    copy = tmp_path / "warehouse.db"
    shutil.copy(sa.make_url(warehouse_url).database, copy)
    copy_url = f"sqlite:///{copy}"
    engine = create_warehouse_engine(copy_url)
    with engine.begin() as conn:
        for table in TRUTH_TABLES:
            conn.execute(sa.text(f"DROP TABLE {table}"))
    engine.dispose()
    run_dir = tmp_path / "run"
    write_truth_as_predictions(warehouse_url, features_dir, run_dir)
    assert compute_oracle_metrics(copy_url, features_dir) == []
    comparison = compare_with_oracle(copy_url, run_dir)
    assert "oracle" not in comparison["model"].to_list() and comparison.height == 6
    assert comparison.filter(task="category")["accuracy_vs_true"].to_list() == [None]


@pytest.mark.slow
def test_ablation_on_a_tiny_demo_warehouse_gives_finite_numbers_for_every_task(
    demo: tuple[str, Path], tmp_path: Path
) -> None:
    warehouse_url, _ = demo
    config = MultiTaskConfig(max_epochs=2, patience=1, batch_size=512)
    table = run_ablation(
        warehouse_url, DS, tmp_path / "work", WINDOW_DAYS, seed=3, config=config, feature_config=FEATURES
    )
    assert table.select("task", "metric").rows() == [
        ("click", "auc"),
        ("purchase", "auc"),
        ("review", "auc"),
        ("category", "accuracy"),
        ("category", "accuracy_vs_true"),
        ("fraud", "auc"),
    ]
    for row in table.iter_rows(named=True):
        for column in ("single_task", "single_task_same_steps", "multi_task", "n_rows"):
            assert row[column] is not None and math.isfinite(row[column]), (row, column)
        if row["metric"] != "accuracy_vs_true":
            assert row["oracle"] is not None and 0.5 < row["oracle"] <= 1.0, row
    assert table.filter(task="fraud")["lightgbm"].is_not_null().all()
    assert (tmp_path / "work" / "models" / "single_review" / "metrics.json").exists()
