"""The nightly run report built from a real SQLite warehouse: scores and model_runs written by
publish_scores, model_registry rows by register_model (the gate), data_quality_results rows, and
prediction/feature Parquet files in the layout the trainers write."""
from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from etl.contract import MAIN_METRIC, OBJECTIVES
from etl.layout import RunLayout
from etl.publish import publish_scores
from etl.warehouse import TABLE_SCHEMAS, create_tables, create_warehouse_engine, insert_frame
from reporting.__main__ import main
from reporting.calibration import calibration_curves, calibration_inputs, equal_count_calibration
from reporting.data import find_scoring_dirs, serving_dirs
from reporting.report import write_run_report
from training.evaluation import metric_rows
from training.comparison import Evidence
from training.registry import read_champions, register_model, trained_objectives

DS = date(2026, 1, 22)
CATEGORIES = ["books", "toys", "garden"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def write_night(url: str, run_dir: Path, ds: date, objectives: list[str], seed: int, run_id: str) -> dict[str, dict]:
    """One night's files and warehouse rows: features with labels, both models' predictions (the
    trainers' columns), publish_scores' tables and the gate's registry rows. Returns the scoring summaries."""
    rng = np.random.default_rng(seed)
    features, mtl_dir, lgbm_dir = run_dir / "features", run_dir / "models" / "multitask", run_dir / "models" / "fraud_lgbm"
    for directory in (features, mtl_dir / "predictions", lgbm_dir / "predictions"):
        directory.mkdir(parents=True, exist_ok=True)
    day = datetime(ds.year, ds.month, ds.day)

    n = 400
    score = rng.normal(size=n)
    p_click = _sigmoid(score - 1.0)
    clicked = (rng.random(n) < p_click).astype(np.int8)
    p_purchase = p_click * 0.3
    converted = (clicked & (rng.random(n) < 0.3)).astype(np.int8)
    pl.DataFrame({"event_id": np.arange(n), "split": ["eval"] * n, "clicked": clicked, "converted": converted}).write_parquet(
        features / "impressions.parquet")
    pl.DataFrame({"event_id": np.arange(n), "p_click": p_click, "p_purchase": p_purchase}).write_parquet(
        mtl_dir / "predictions" / "impressions_eval.parquet")
    users = np.repeat(np.arange(1, 11), 25)
    pl.DataFrame({"user_id": users, "item_id": np.tile(np.arange(100, 125), 10), "scenario": ["search"] * users.size,
                  "p_click": rng.uniform(0.05, 0.6, users.size)}).with_columns(
        (pl.col("p_click") * 0.2).alias("p_purchase")).write_parquet(mtl_dir / "predictions" / "candidates.parquet")

    n_reviews = 60
    p_negative = rng.uniform(0, 1, n_reviews)
    pl.DataFrame({
        "review_id": np.arange(n_reviews), "split": ["eval"] * n_reviews,
        "negative": (rng.random(n_reviews) < p_negative).astype(np.int8),
        "created_at": [day + timedelta(minutes=int(m)) for m in rng.integers(0, 1400, n_reviews)],
    }).write_parquet(features / "reviews.parquet")
    pl.DataFrame({"review_id": np.arange(n_reviews), "split": ["eval"] * n_reviews, "p_negative": p_negative}).write_parquet(
        mtl_dir / "predictions" / "reviews.parquet")

    n_items = 50
    listed = [CATEGORIES[i % 3] for i in range(n_items)]
    predicted = [c if i % 5 else CATEGORIES[(i + 1) % 3] for i, c in enumerate(listed)]
    pl.DataFrame({"item_id": np.arange(n_items), "split": ["eval"] * n_items, "listed_category": listed,
                  "predicted_category": predicted, "confidence": rng.uniform(0.4, 1.0, n_items)}).write_parquet(
        mtl_dir / "predictions" / "items.parquet")

    n_orders = 300
    split = ["eval"] * 200 + ["score"] * 100
    risk = rng.normal(size=n_orders) - 2.5
    is_fraud = [int(v) if s == "eval" else None for v, s in zip(rng.random(n_orders) < _sigmoid(risk), split)]
    pl.DataFrame({"order_id": np.arange(n_orders), "split": split, "is_fraud": is_fraud},
                 schema={"order_id": pl.Int64, "split": pl.String, "is_fraud": pl.Int8}).write_parquet(features / "orders.parquet")
    for model_dir, noise in ((mtl_dir, 0.5), (lgbm_dir, 0.2)):
        pl.DataFrame({"order_id": np.arange(n_orders), "split": split,
                      "p_fraud": _sigmoid(risk + rng.normal(scale=noise, size=n_orders))}).write_parquet(
            model_dir / "predictions" / "orders.parquet")

    labels = {"click": (clicked, p_click), "purchase": (converted, p_purchase)}
    eval_fraud = np.array([v for v in is_fraud if v is not None])
    mtl_metrics = [row for objective in ("click", "purchase") if objective in objectives for row in metric_rows(objective, *labels[objective])]
    if "review" in objectives:
        negatives = pl.read_parquet(features / "reviews.parquet")["negative"].to_numpy()
        mtl_metrics += metric_rows("review", negatives, p_negative)
    if "category" in objectives:
        accuracy = float(np.mean([a == b for a, b in zip(listed, predicted)])) - 0.01 * seed
        mtl_metrics += [{"task": "category", "metric": "accuracy", "value": accuracy, "n_rows": n_items},
                        {"task": "category", "metric": "log_loss", "value": 0.5, "n_rows": n_items}]
    summaries = {"multitask": {"model_name": "multitask", "model_version": f"mtl-{ds:%Y%m%d}-{seed:06d}aa",
                               "output_dir": str(mtl_dir), "metrics": []}}
    if "fraud" in objectives:
        for name, model_dir, prefix in (("multitask", mtl_dir, "mtl"), ("fraud_lgbm", lgbm_dir, "lgbm")):
            p_fraud = pl.read_parquet(model_dir / "predictions" / "orders.parquet").filter(split="eval")["p_fraud"].to_numpy()
            rows = metric_rows("fraud", eval_fraud, p_fraud)
            if name == "multitask":
                mtl_metrics += rows
            else:
                summaries[name] = {"model_name": name, "model_version": f"{prefix}-{ds:%Y%m%d}-{seed:06d}bb",
                                   "output_dir": str(model_dir), "metrics": rows}
    summaries["multitask"]["metrics"] = mtl_metrics
    for summary in summaries.values():
        (Path(summary["output_dir"]) / "metrics.json").write_text(json.dumps(summary))

    decisions = {}
    for name, summary in summaries.items():
        # The champion "on the same rows": clearly better on even seeds, so some nights are rejected.
        objectives_trained = trained_objectives(summary["metrics"])
        seen = read_champions(url, name)
        shift = 0.05 if seed % 2 == 0 else -0.05
        evidence = {}
        for objective in objectives_trained if seen else []:
            value = next(r["value"] for r in summary["metrics"] if r["task"] == objective and r["metric"] == MAIN_METRIC[objective])
            evidence[objective] = Evidence(objective, MAIN_METRIC[objective], value, value + shift, -shift, -shift - 0.01,
                                           -shift + 0.01, 0.95, 1000, None if objective == "category" else 500)
        registration = register_model(url, ds, summary, evidence, {o: seen[o]["model_version"] if o in seen else None
                                                                   for o in objectives_trained})
        decisions[name] = registration.rows()  # what the DAG hands the report
    publish_scores(url, ds, run_id, objectives, features, {name: {o: summary for o in trained_objectives(summary["metrics"])}
                                                           for name, summary in summaries.items()}, list(summaries.values()))
    return {"summaries": summaries, "decisions": decisions}


def write_quality(url: str, ds: date, run_id: str, failing: bool) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {"run_id": run_id, "ds": ds, "table_name": table, "column_name": column, "expectation": rule, "critical": True,
         "success": True, "element_count": 100, "unexpected_count": 0, "sample_values": "[]", "details_json": "{}",
         "created_at": now}
        for table, column, rule in [("orders", "order_id", "expect_column_values_to_be_unique"),
                                    ("clicks", "user_id", "expect_column_values_to_not_be_null"),
                                    ("reviews", "rating", "expect_column_values_to_be_between")]
    ]
    if failing:
        rows.append({**rows[0], "column_name": "amount", "expectation": "expect_column_values_to_be_between",
                     "success": False, "unexpected_count": 3, "sample_values": json.dumps(["<script>alert(1)</script>", -5.0])})
        rows.append({**rows[1], "column_name": "session_id", "expectation": "expect_column_values_to_not_be_null",
                     "critical": False, "success": False, "unexpected_count": 7})
    engine = create_warehouse_engine(url)
    try:
        create_tables(engine, areas=["ops"])
        with engine.begin() as conn:
            insert_frame(conn, "data_quality_results", pl.DataFrame(rows, schema=TABLE_SCHEMAS["data_quality_results"]))
    finally:
        engine.dispose()


def referenced_pngs(report: Path) -> list[Path]:
    """Every <img src> of the report, checked to be a relative, existing, valid, non-empty PNG."""
    sources = re.findall(r'<img src="([^"]+)"', report.read_text())
    paths = []
    for source in sources:
        assert not re.match(r"^[a-z]+:|^/", source), f"not a relative link: {source}"
        path = report.parent / source
        assert path.is_file(), path
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 0 and image.size[1] > 0
            image.verify()
        paths.append(path)
    return paths


def test_report_over_several_nights_shows_plots_gate_and_data_quality(tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    nights = [DS - timedelta(days=2), DS - timedelta(days=1), DS]
    for seed, night in enumerate(nights, start=1):
        result = write_night(url, tmp_path / "runs" / night.isoformat(), night, list(OBJECTIVES), seed, f"run-{night}")
    run_dir = tmp_path / "runs" / DS.isoformat()
    write_quality(url, DS, "run-<D>&1", failing=True)
    (run_dir / "data_docs").mkdir()
    (run_dir / "data_docs" / "index.html").write_text("<html></html>")

    report = write_run_report(
        url, DS, "run-<D>&1", run_dir, list(OBJECTIVES),
        scoring={name: summary for name, summary in result["summaries"].items()},
        decisions=[row for rows in result["decisions"].values() for row in rows],
    )

    assert report == run_dir / "report.html" and report.is_file()
    text = report.read_text()
    pngs = referenced_pngs(report)
    assert {p.name for p in pngs} == {"metrics_history.png", "score_distributions.png", "calibration.png"}
    assert all(p.parent == run_dir / "report" for p in pngs)
    # Header: day, run id (escaped), the versions that scored, the gate's decisions.
    assert DS.isoformat() in text and "run-&lt;D&gt;&amp;1" in text and "run-<D>&1" not in text
    assert result["summaries"]["multitask"]["model_version"] in text
    assert result["summaries"]["fraud_lgbm"]["model_version"] in text
    assert result["decisions"]["multitask"][0]["status"] in text and "worse than champion" in text
    # GX summary: per-table counts, the critical failure with table, column, rule and count, escaped samples.
    critical = text.split("Critical failures")[1].split("Warnings")[0]
    assert "orders" in critical and "amount" in critical and "expect_column_values_to_be_between" in critical
    assert ">3<" in critical
    assert "session_id" in text.split("Warnings (non-critical failures)")[1]
    # Every expectation checked, per table, readable offline (GX's data docs need CDNs for theirs).
    every = text.split("Every expectation checked")[1]
    assert "orders: 2 expectations, 1 failed" in every and "clicks: 2 expectations, 1 failed" in every
    assert "reviews: 1 expectations, 0 failed" in every and every.count("<details>") == 3
    assert "expect_column_values_to_be_unique" in every.split("orders:")[1] and "FAILED" in every
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert 'href="data_docs/index.html"' in text
    # No network resources.
    assert not re.search(r'(src|href)="(https?:)?//', text)


def test_one_night_of_history_renders_single_points(tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    run_dir = tmp_path / "runs" / DS.isoformat()
    write_night(url, run_dir, DS, list(OBJECTIVES), 1, "run-1")
    write_quality(url, DS, "run-1", failing=False)

    with _no_warnings():
        report = write_run_report(url, DS, "run-1", run_dir, list(OBJECTIVES), history_days=14)

    assert len(referenced_pngs(report)) == 3
    text = report.read_text()
    assert "Critical failures" not in text and "3 expectations evaluated, 0 failed" in text
    assert "no GX data docs" in text  # this run directory has none


class _no_warnings:
    """Fail on any warning (matplotlib's empty-legend or singular-limit warnings included)."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


@pytest.mark.parametrize("flag", ["--objectives", "--tasks"])  # --tasks: the old name, kept as an alias
def test_a_deployment_without_fraud_notes_the_missing_objective_and_the_cli_finds_the_predictions(tmp_path, capsys, flag):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    objectives = ["click", "purchase", "review", "category"]
    run_dir = tmp_path / "runs" / DS.isoformat()
    write_night(url, run_dir, DS, objectives, 1, "run-1")

    report = main(["--warehouse-url", url, "--ds", DS.isoformat(), "--run-dir", str(run_dir), flag, ",".join(objectives)])

    assert report == run_dir / "report.html" and str(report) in capsys.readouterr().out
    text = report.read_text()
    assert "fraud: not in this deployment" in text
    assert "fraud_lgbm" not in text and "lgbm-" not in text  # no baseline rows anywhere
    assert len(referenced_pngs(report)) == 3  # calibration found the predictions through metrics.json
    assert "no data_quality_results" in text


def test_a_category_only_deployment_and_an_empty_warehouse_still_write_a_report(tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    empty = write_run_report(url, DS, "run-0", tmp_path / "empty_run", ["category"])
    assert empty.is_file() and referenced_pngs(empty) == []
    assert "no score table has rows" in empty.read_text()

    run_dir = tmp_path / "runs" / DS.isoformat()
    write_night(url, run_dir, DS, ["category"], 1, "run-1")
    report = write_run_report(url, DS, "run-1", run_dir, ["category"])
    text = report.read_text()
    assert {p.name for p in referenced_pngs(report)} == {"metrics_history.png", "score_distributions.png"}
    for objective in ("click", "purchase", "review", "fraud"):
        assert f"{objective}: not in this deployment" in text


def test_equal_count_calibration_handles_tiny_inputs():
    mean_predicted, observed = equal_count_calibration(np.array([1.0]), np.array([0.7]))
    assert mean_predicted.tolist() == [0.7] and observed.tolist() == [1.0]
    y = np.array([0, 1] * 50, dtype=float)
    p = np.linspace(0, 1, 100)
    mean_predicted, observed = equal_count_calibration(y, p)
    assert len(mean_predicted) == 10 and np.all(np.diff(mean_predicted) > 0) and observed.mean() == pytest.approx(0.5)


def test_calibration_uses_the_labelled_eval_rows_of_the_models_that_scored(tmp_path):
    """Only evaluation rows with a known label and a probability; LightGBM next to the network on fraud;
    a champion kept by the gate (models/<name>_champion/<version>) is found by the version that scored."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    layout = RunLayout(tmp_path / "runs" / DS.isoformat())
    summaries = write_night(url, layout.run_dir, DS, list(OBJECTIVES), 1, "run-1")["summaries"]
    dirs = {name: Path(summary["output_dir"]) for name, summary in summaries.items()}
    network_orders = dirs["multitask"] / "predictions" / "orders.parquet"
    pl.read_parquet(network_orders).with_columns(
        pl.when(pl.col("order_id") == 0).then(float("nan")).otherwise(pl.col("p_fraud")).alias("p_fraud")
    ).write_parquet(network_orders)

    inputs, reason = calibration_inputs("fraud", layout.features_dir, dirs)
    assert reason is None and [label for label, _, _ in inputs] == ["network", "LightGBM"]
    network, lightgbm = inputs[0], inputs[1]
    assert lightgbm[1].size == 200 and network[1].size == 199  # the 200 eval orders; order 0's NaN left out
    assert not np.isnan(network[2]).any() and set(np.unique(lightgbm[1])) <= {0.0, 1.0}
    inputs, reason = calibration_inputs("click", layout.features_dir, dirs)
    assert reason is None and [(label, y.size) for label, y, _ in inputs] == [("network", 400)]
    inputs, reason = calibration_inputs("review", layout.features_dir, {})
    assert inputs == [] and "not found" in reason

    champion = layout.champion_dir("fraud_lgbm") / "lgbm-old"
    champion.mkdir(parents=True)
    (champion / "metrics.json").write_text(json.dumps({"model_name": "fraud_lgbm", "model_version": "lgbm-old"}))
    versions = {"multitask": summaries["multitask"]["model_version"], "fraud_lgbm": "lgbm-old"}
    assert find_scoring_dirs(layout, versions) == {"multitask": dirs["multitask"], "fraud_lgbm": champion}

    # A night whose review objective stayed with an older champion: its curve comes from that model's files.
    kept = layout.champion_dir("multitask") / "mtl-old"
    (kept / "predictions").mkdir(parents=True)
    pl.read_parquet(dirs["multitask"] / "predictions" / "reviews.parquet").with_columns(
        pl.lit(0.5).alias("p_negative")
    ).write_parquet(kept / "predictions" / "reviews.parquet")
    scoring = {"multitask": {"click": {"output_dir": str(dirs["multitask"])}, "review": {"output_dir": str(kept)}}}
    curves, _ = calibration_curves(["click", "review"], layout.features_dir, dirs, serving_dirs(scoring))
    assert np.allclose(curves["review"][0].mean_predicted, 0.5)
    assert not np.allclose(curves["click"][0].mean_predicted, 0.5)
