"""The ablation table and the oracle beside it: same rows for models and truth, blanks without truth,
and the whole run on a tiny demo warehouse."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from etl.config import FeatureConfig
from etl.layout import prediction_path
from demo.oracle import TRUTH_TABLES, compare_with_oracle, compute_category_accuracy_vs_truth, write_oracle_predictions
from demo.synthetic import generate_warehouse
from etl.warehouse import create_warehouse_engine, read_frame
from training.ablation.__main__ import main as ablation_main
from training.ablation.run import (
    ORACLE,
    prepare_features,
    run_ablation,
    same_steps_config,
    steps_per_epoch,
    thinnest_scenario,
    write_scenario_features,
)
from training.ablation.scores import eval_scenarios, metric_rows, paired_rows, scored_rows
from training.ablation.table import format_comparisons, format_metrics, summarize_metrics
from training.config import MultiTaskConfig

START, DS = date(2026, 1, 1), date(2026, 1, 20)
WINDOW_DAYS = 14
FEATURES = FeatureConfig(maturity_days=5, fraud_eval_days=3)  # a 14-day window still has a fraud holdout


def metric(seed: int, model: str, task: str, value: float, scenario: str = "all", metric: str = "auc", n_rows: int = 10) -> dict:
    return {"seed": seed, "model": model, "task": task, "scenario": scenario, "metric": metric, "value": value, "n_rows": n_rows}


def test_metrics_table_gives_mean_and_sd_over_seeds_in_task_then_scenario_order() -> None:
    metrics = pl.DataFrame([
        metric(1, "multitask", "fraud", 0.90, n_rows=50), metric(2, "multitask", "fraud", 0.92, n_rows=50),
        metric(1, "lightgbm", "fraud", 0.93, n_rows=50), metric(2, "lightgbm", "fraud", 0.95, n_rows=50),
        metric(1, "multitask", "click", 0.70, "search"), metric(1, "multitask", "click", 0.75),
        metric(1, "oracle", "click", 0.80), metric(1, "multitask", "category", 0.8, metric="accuracy"),
        metric(1, "single_task", "category", 0.9, metric="accuracy_vs_true"),
    ])  # fmt: skip
    summary = summarize_metrics(metrics)
    fraud = summary.filter(task="fraud", model="lightgbm").row(0, named=True)
    assert fraud["mean"] == pytest.approx(0.94) and fraud["sd"] == pytest.approx(0.01414, abs=1e-4) and fraud["n_seeds"] == 2
    table = format_metrics(metrics).splitlines()
    assert table[0] == "| task | scenario | metric | rows | network | single-task | LightGBM | oracle | network / oracle |"
    assert [line.split(" | ")[:3] for line in table[2:]] == [
        ["| click", "all", "auc"], ["| click", "search", "auc"], ["| category", "all", "accuracy"],
        ["| category", "all", "accuracy_vs_true"], ["| fraud", "all", "auc"],
    ]  # fmt: skip
    assert table[2].endswith("| 0.750 |  |  | 0.800 | 0.94x |")
    assert table[-1] == "| fraud | all | auc | 50 | 0.910 ± 0.014 |  | 0.940 ± 0.014 |  |  |"


def test_scores_and_pairs_read_every_model_alike_overall_and_per_scenario(tmp_path: Path) -> None:
    features = tmp_path / "features"
    (features / "impressions.parquet").mkdir(parents=True)
    labels = [1, 0, 1, 0, 1, 0, 1, 0]
    pl.DataFrame({
        "event_id": list(range(8)), "split": ["eval"] * 8, "clicked": labels, "converted": [0] * 8,
        "scenario": ["search"] * 4 + ["cart"] * 4,
    }).write_parquet(features / "impressions.parquet" / "2026-01-20.parquet")  # fmt: skip
    perfect = [0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4]
    for model, p_click in (("net", perfect), ("peer", [0.5] * 8)):
        predictions = pl.DataFrame({"event_id": list(range(8)), "p_click": p_click, "p_purchase": [0.1] * 8})
        prediction_path(tmp_path / model, "impressions_eval").parent.mkdir(parents=True)
        predictions.write_parquet(prediction_path(tmp_path / model, "impressions_eval"))
    scenarios = eval_scenarios(features)
    network, peer = (scored_rows("click", tmp_path / model, features, scenarios) for model in ("net", "peer"))
    rows = {row["scenario"]: row for row in metric_rows("net", "click", network)}
    assert list(rows) == ["all", "cart", "search"] and rows["all"]["value"] == 1.0 and rows["cart"]["n_rows"] == 4
    assert [row["scenario"] for row in metric_rows("net", "click", network, only="cart")] == ["cart"]
    paired = dict(paired_rows("click", network, peer))
    assert paired["all"].difference == pytest.approx(0.5) and paired["all"].n_rows == 8 and paired["search"].n_rows == 4


def test_the_thinnest_scenario_alone_keeps_every_evaluation_row(tmp_path: Path) -> None:
    features = tmp_path / "features"
    (features / "impressions.parquet").mkdir(parents=True)
    (features / "manifest.json").write_text("{}")
    pl.DataFrame({
        "event_id": list(range(6)), "split": ["train"] * 4 + ["eval"] * 2,
        "scenario": ["search", "search", "cart", None, "search", "search"],
    }).write_parquet(features / "impressions.parquet" / "2026-01-20.parquet")  # fmt: skip
    assert thinnest_scenario(features) == "cart"
    alone = write_scenario_features(features, tmp_path / "alone", "cart")
    kept = pl.read_parquet(alone / "impressions.parquet" / "2026-01-20.parquet")
    assert kept["event_id"].to_list() == [2, 4, 5] and (alone / "manifest.json").exists()


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

    # The oracle written as a model directory scores like compare_with_oracle's oracle, on the same rows.
    oracle_dir = tmp_path / "oracle"
    assert write_oracle_predictions(warehouse_url, features_dir, oracle_dir) == ["click", "purchase", "review", "fraud", "category"]
    scenarios = eval_scenarios(features_dir)
    for task in ("click", "purchase", "review", "fraud", "category"):
        (row,) = metric_rows(ORACLE, task, scored_rows(task, oracle_dir, features_dir, scenarios))[:1]
        expected = comparison.filter(task=task, model="oracle").row(0, named=True)
        assert row["value"] == pytest.approx(expected[row["metric"]]) and row["n_rows"] == expected["n_rows"], task
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
    assert write_oracle_predictions(copy_url, features_dir, tmp_path / "oracle") == []
    comparison = compare_with_oracle(copy_url, run_dir)
    assert "oracle" not in comparison["model"].to_list() and comparison.height == 6
    assert comparison.filter(task="category")["accuracy_vs_true"].to_list() == [None]


@pytest.mark.slow
def test_ablation_on_a_tiny_demo_warehouse_scores_every_model_on_the_same_rows(demo: tuple[str, Path], tmp_path: Path) -> None:
    warehouse_url, features_dir = demo
    config = MultiTaskConfig(max_epochs=2, patience=1, batch_size=512)
    result = run_ablation(
        warehouse_url, DS, tmp_path / "work", WINDOW_DAYS, seeds=(3, 4), config=config, feature_config=FEATURES,
        features_dir=features_dir, peers=("lightgbm", "tfidf_logistic"),
    )  # fmt: skip
    metrics = result.metrics
    assert set(metrics["seed"]) == {3, 4} and metrics["value"].is_not_null().all()
    overall = metrics.filter(scenario="all", seed=3)
    assert set(overall.filter(model="multitask")["task"]) == {"click", "purchase", "review", "category", "fraud"}
    for task, group in overall.filter(pl.col("metric") != "accuracy_vs_true").group_by("task"):
        assert group["n_rows"].n_unique() == 1, (task, group)  # every model and the oracle: the same rows
        assert {"multitask", "single_task", "lightgbm", "oracle"} <= set(group["model"]), task
    assert set(overall.filter(task="review")["model"]) >= {"tfidf_logistic"}
    thin = result.thin_scenario
    assert thin is not None and set(metrics.filter(model="scenario_alone")["scenario"]) == {thin}
    assert {thin, "home_feed"} <= set(metrics.filter(model="multitask", task="click")["scenario"])
    comparisons = result.comparisons
    assert "multitask" not in set(comparisons["model"])
    with_interval = comparisons.filter(pl.col("low").is_not_null())
    assert with_interval.height and (with_interval["low"] <= with_interval["difference"]).all()
    assert (with_interval["difference"] <= with_interval["high"]).all()
    assert "| click | all | auc |" in format_metrics(metrics) and "LightGBM" in format_comparisons(comparisons)


@pytest.mark.slow
def test_the_command_prints_both_tables_and_writes_the_long_rows(
    demo: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse_url, features_dir = demo
    ablation_main([
        "--warehouse-url", warehouse_url, "--ds", DS.isoformat(), "--features-dir", str(features_dir),
        "--work-dir", str(tmp_path), "--seeds", "5", "--peers", "", "--max-epochs", "1",
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert "| task | scenario | metric | rows | network | single-task |" in printed
    assert "The network minus each model, paired on the same rows (all and " in printed
    written = json.loads((tmp_path / "ablation.json").read_text())
    assert {row["seed"] for row in written["metrics"]} == {5} and written["thin_scenario"]
    with pytest.raises(SystemExit):
        ablation_main(["--warehouse-url", warehouse_url, "--ds", DS.isoformat(), "--peers", "xgboost"])
