"""Champion and challenger: the gate's decisions, the registry table on SQLite and PostgreSQL, and
scoring with the champion's saved artifacts."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from datetime import date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa

from etl.warehouse import create_warehouse_engine, read_frame
from training.config import FraudLgbmConfig, GateConfig, MultiTaskConfig, NetworkConfig
from training.fraud_lgbm import evaluate_fraud_lgbm, train_fraud_lgbm
from training.gate import choose_scoring_model, evaluate_champion, gate_model, score_with_model, unseen_rows_view
from training.promotion import decide_promotion
from training.registry import ChampionChangedError, read_champion, register_model

DS = date(2026, 2, 4)


def rows(**values: float | None) -> list[dict]:
    """Metric rows from ``task_metric=value`` keywords, 100 rows each."""
    result = []
    for key, value in values.items():
        task, metric = key.split("_", 1)
        result.append({"task": task, "metric": metric, "value": value, "n_rows": 100})
    return result


def summary(version: str, output_dir: str = "/models/x", name: str = "multitask", **values: float | None) -> dict:
    return {"model_name": name, "model_version": version, "output_dir": output_dir, "metrics": rows(**values)}


# --- the gate ----------------------------------------------------------------------------------------


def test_first_model_is_promoted() -> None:
    decision = decide_promotion(rows(click_auc=0.5), None, GateConfig())
    assert decision.promote and "first model" in decision.reasons[0]


def test_worse_beyond_tolerance_is_rejected_naming_task_metric_values_and_tolerance() -> None:
    champion = rows(click_auc=0.78, purchase_auc=0.84, fraud_auc=0.93)
    challenger = rows(click_auc=0.76, purchase_auc=0.85, fraud_auc=0.95)
    decision = decide_promotion(challenger, champion, GateConfig(tolerance=0.01))
    assert not decision.promote
    assert len(decision.reasons) == 1
    reason = decision.reasons[0]
    assert reason.startswith("click auc") and "0.7600" in reason and "0.7800" in reason and "0.01" in reason


def test_within_tolerance_is_promoted_and_the_boundary_counts_as_within() -> None:
    champion = rows(click_auc=0.80, fraud_pr_auc=0.50)
    assert decide_promotion(rows(click_auc=0.79, fraud_pr_auc=0.495), champion, GateConfig(tolerance=0.01)).promote
    assert not decide_promotion(
        rows(click_auc=0.789, fraud_pr_auc=0.5), champion, GateConfig(tolerance=0.01)
    ).promote
    assert decide_promotion(rows(click_auc=0.70), champion, GateConfig(tolerance=0.2)).promote


def test_log_loss_is_lower_is_better_and_accuracy_higher_is_better() -> None:
    champion = rows(click_log_loss=0.30, category_accuracy=0.90)
    assert decide_promotion(rows(click_log_loss=0.25, category_accuracy=0.95), champion).promote  # both better
    worse_loss = decide_promotion(rows(click_log_loss=0.35, category_accuracy=0.95), champion)
    assert (
        not worse_loss.promote
        and worse_loss.reasons[0].startswith("click log_loss")
        and "lower" in worse_loss.reasons[0]
    )
    worse_accuracy = decide_promotion(rows(click_log_loss=0.30, category_accuracy=0.85), champion)
    assert not worse_accuracy.promote and worse_accuracy.reasons[0].startswith("category accuracy")


def test_only_metrics_in_both_with_values_and_the_same_rows_are_compared() -> None:
    champion = rows(click_auc=0.90, review_auc=0.90, fraud_auc=None) + [
        {"task": "purchase", "metric": "auc", "value": 0.9, "n_rows": 50}
    ]
    challenger = rows(click_auc=None, fraud_auc=0.5, purchase_auc=0.5, category_accuracy=0.1)
    decision = decide_promotion(challenger, champion)
    assert decision.promote  # every pair lacks a value, a partner, or the same rows
    assert any("purchase auc not compared" in reason for reason in decision.reasons)


def test_duplicate_metric_rows_are_an_error() -> None:
    with pytest.raises(ValueError, match="click.auc twice"):
        decide_promotion(rows(click_auc=0.5) * 2, rows(click_auc=0.5))


# --- the registry table ------------------------------------------------------------------------------


def registry_rows(warehouse_url: str) -> dict[str, str]:
    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn:
        frame = read_frame(conn, "SELECT model_version, status FROM model_registry", table="model_registry")
    engine.dispose()
    return dict(frame.iter_rows())


def test_register_promotes_the_first_rejects_worse_promotes_better_and_is_idempotent(warehouse_url: str) -> None:
    assert read_champion(warehouse_url, "multitask") is None  # no table yet

    first = register_model(warehouse_url, DS, summary("v1", "/m/v1", click_auc=0.78, click_log_loss=0.30), None)
    assert first.status == "champion" and first.champion_version == "v1"
    champion = read_champion(warehouse_url, "multitask")
    assert champion == {
        "model_version": "v1",
        "artifact_path": "/m/v1",
        "trained_ds": DS.isoformat(),
        "metrics": rows(click_auc=0.78, click_log_loss=0.30),
    }

    # The champion re-evaluated on the next day's rows scores 0.77; a challenger at 0.74 is worse.
    day2 = date(2026, 2, 5)
    worse = register_model(warehouse_url, day2, summary("v2", "/m/v2", click_auc=0.74), rows(click_auc=0.77))
    assert worse.status == "rejected" and worse.champion_version == "v1"
    assert worse.champion_artifact_path == "/m/v1" and "click auc" in worse.reasons[0]
    assert choose_scoring_model(worse, "/m/v2") == "/m/v1"  # the champion keeps scoring

    better = register_model(warehouse_url, day2, summary("v3", "/m/v3", click_auc=0.80), rows(click_auc=0.77))
    assert better.status == "champion" and better.champion_version == "v3"
    assert choose_scoring_model(better, "/m/v3") == "/m/v3"
    assert registry_rows(warehouse_url) == {"v1": "challenger", "v2": "rejected", "v3": "champion"}

    # Re-running a day registers nothing new and returns that night's decision, although v3 has
    # replaced the champion v2 lost to since.
    rerun = register_model(warehouse_url, day2, summary("v2", "/m/v2", click_auc=0.74), rows(click_auc=0.77))
    assert rerun == dataclasses.replace(worse, recorded=True)
    assert choose_scoring_model(rerun, "/m/v2") == "/m/v1"
    assert register_model(
        warehouse_url, day2, summary("v3", "/m/v3", click_auc=0.80), rows(click_auc=0.80)
    ) == dataclasses.replace(better, recorded=True)
    assert registry_rows(warehouse_url) == {"v1": "challenger", "v2": "rejected", "v3": "champion"}

    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn:
        recorded = read_frame(conn, "SELECT * FROM model_registry WHERE model_version = 'v2'", table="model_registry")
    engine.dispose()
    assert json.loads(recorded["reasons_json"][0]) == worse.reasons
    assert recorded["compared_with"][0] == "v1"
    assert json.loads(recorded["compared_metrics_json"][0]) == {
        "champion": rows(click_auc=0.77),
        "challenger": rows(click_auc=0.74),
    }
    assert recorded["trained_ds"][0] == day2


def test_registry_refuses_stale_champion_metrics_and_backfills_and_allows_one_champion(warehouse_url: str) -> None:
    register_model(warehouse_url, DS, summary("v1", click_auc=0.78), None)
    register_model(
        warehouse_url, DS, summary("v2", click_auc=0.79), [{**r, "model_version": "v1"} for r in rows(click_auc=0.78)]
    )
    with pytest.raises(ChampionChangedError, match="champion is now v2"):
        register_model(
            warehouse_url,
            DS,
            summary("v3", click_auc=0.9),
            [{**r, "model_version": "v1"} for r in rows(click_auc=0.78)],
        )
    assert "v3" not in registry_rows(warehouse_url)  # the failed registration left nothing behind

    backfill = register_model(warehouse_url, date(2026, 1, 20), summary("v0", click_auc=0.99), rows(click_auc=0.5))
    assert backfill.status == "rejected" and "backfill" in backfill.reasons[0]

    lgbm = register_model(warehouse_url, DS, summary("l1", name="fraud_lgbm", fraud_auc=0.9), None)
    assert lgbm.status == "champion"  # champions are per model name
    assert read_champion(warehouse_url, "multitask")["model_version"] == "v2"

    engine = create_warehouse_engine(warehouse_url)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE model_registry SET status = 'champion' WHERE model_version = 'v1'"))
    engine.dispose()


# --- saved artifacts: evaluating and scoring with the champion -------------------------------------

TINY_NETWORK = MultiTaskConfig(
    network=NetworkConfig(embedding_dim=8, hidden_dims=(16,), head_hidden_dim=8, fraud_hidden_dims=(8,)),
    batch_size=256,
    max_epochs=2,
    num_threads=1,
)


@pytest.fixture(scope="module")
def lgbm_dir(features_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output_dir = tmp_path_factory.mktemp("lgbm")
    train_fraud_lgbm(features_dir, output_dir, FraudLgbmConfig(num_boost_round=100, early_stopping_rounds=10))
    return output_dir


def test_unseen_rows_view_leaves_out_holdout_orders_a_day_old_champion_may_have_trained_on(tmp_path: Path) -> None:
    # Day D = 2026-02-04, maturity 14, 3 holdout days: the holdout is orders of Jan 19, 20 and 21.
    # Yesterday's champion saw Jan 21 orders as young ones (labelled frauds among them were training rows).
    features_dir = tmp_path / "features"
    features_dir.mkdir()
    (features_dir / "manifest.json").write_text(json.dumps({"ds": "2026-02-04", "config": {"maturity_days": 14}}))
    (features_dir / "impressions.parquet").write_bytes(b"linked, never read")
    days = [date(2026, 1, 10), date(2026, 1, 19), date(2026, 1, 20), date(2026, 1, 21), date(2026, 2, 1)]
    orders = pl.DataFrame(
        {
            "order_id": [1, 2, 3, 4, 5],
            "created_at": [datetime(d.year, d.month, d.day, 12) for d in days],
            "split": ["train", "eval", "eval", "eval", "train"],
            "is_fraud": [0, 1, 0, 1, 1],
        }
    )
    orders.write_parquet(features_dir / "orders.parquet")
    with unseen_rows_view(features_dir, date(2026, 2, 3)) as view:
        assert pl.read_parquet(view / "orders.parquet")["order_id"].to_list() == [1, 2, 3, 5]
        assert (view / "impressions.parquet").read_bytes() == b"linked, never read"
    assert not view.exists()  # a temporary view
    with unseen_rows_view(features_dir, date(2026, 2, 1)) as view:  # three days old: no holdout order is safe
        assert pl.read_parquet(view / "orders.parquet")["order_id"].to_list() == [1, 5]
    with unseen_rows_view(features_dir, date(2026, 2, 4)) as view:  # the same day: the same train split
        assert pl.read_parquet(view / "orders.parquet").equals(orders)


@pytest.mark.slow
def test_gate_rejects_a_deliberately_worse_model_and_the_champion_keeps_scoring(
    lgbm_dir: Path, features_dir: Path, warehouse_url: str, tmp_path: Path
) -> None:
    champion = train_fraud_lgbm(
        features_dir, tmp_path / "champion", FraudLgbmConfig(num_boost_round=100)
    ).to_dict()
    assert gate_model(warehouse_url, DS, champion, features_dir).status == "champion"
    # One stump on one feature: a real model, deliberately much worse.
    stump = FraudLgbmConfig(num_boost_round=1, early_stopping_rounds=1, num_leaves=2, feature_fraction=0.3, seed=11)
    worse = train_fraud_lgbm(features_dir, tmp_path / "worse", stump).to_dict()
    decision = gate_model(warehouse_url, DS, worse, features_dir)
    assert decision.status == "rejected" and decision.champion_version == champion["model_version"]
    assert any(reason.startswith("fraud auc") for reason in decision.reasons), decision.reasons
    assert choose_scoring_model(decision, worse["output_dir"]) == str(tmp_path / "champion")
    # The same model again (a re-run of the day) changes nothing and says it was recorded before.
    rerun = gate_model(warehouse_url, DS, worse, features_dir)
    assert rerun.recorded and dataclasses.replace(rerun, recorded=False) == decision
    assert read_champion(warehouse_url, "fraud_lgbm")["model_version"] == champion["model_version"]


@pytest.mark.slow
def test_evaluate_fraud_lgbm_equals_the_metrics_training_wrote(lgbm_dir: Path, features_dir: Path) -> None:
    written = json.loads((lgbm_dir / "metrics.json").read_text())["metrics"]
    assert evaluate_fraud_lgbm(lgbm_dir, features_dir) == written
    # ... and the published predictions give the same numbers.
    labelled = pl.read_parquet(features_dir / "orders.parquet").filter(
        (pl.col("split") == "eval") & pl.col("is_fraud").is_not_null()
    )
    published = labelled.join(pl.read_parquet(lgbm_dir / "predictions" / "orders.parquet"), on="order_id")
    from training.evaluation import metric_rows

    assert metric_rows("fraud", published["is_fraud"].to_numpy(), published["p_fraud"].to_numpy()) == written


@pytest.mark.slow
def test_evaluate_champion_scores_the_saved_champion_or_says_it_cannot(
    lgbm_dir: Path, features_dir: Path, sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert evaluate_champion(sqlite_url, "fraud_lgbm", features_dir) is None  # nothing registered
    champion_dir = tmp_path / "champion"
    shutil.copytree(lgbm_dir, champion_dir)
    trained = json.loads((champion_dir / "metrics.json").read_text())
    register_model(sqlite_url, DS, {**trained, "output_dir": str(champion_dir)}, None)
    evaluated = evaluate_champion(sqlite_url, "fraud_lgbm", features_dir)
    assert evaluated == [{**row, "model_version": trained["model_version"]} for row in trained["metrics"]]

    scored = score_with_model(champion_dir, features_dir, tmp_path / "scored")
    assert scored.metrics == trained["metrics"] and scored.model_version == trained["model_version"]
    assert pl.read_parquet(tmp_path / "scored" / "predictions" / "orders.parquet").equals(
        pl.read_parquet(champion_dir / "predictions" / "orders.parquet")
    )
    with pytest.raises(ValueError, match="new directory"):
        score_with_model(champion_dir, features_dir, champion_dir)

    (champion_dir / "model.txt").unlink()
    with caplog.at_level(logging.WARNING, logger="training.gate"):
        assert evaluate_champion(sqlite_url, "fraud_lgbm", features_dir) is None
    assert "treated as absent" in caplog.text


@pytest.mark.slow
def test_score_with_model_reproduces_the_networks_own_predictions(features_dir: Path, tmp_path: Path) -> None:
    from training.train import train_multitask

    config = TINY_NETWORK
    trained = train_multitask(features_dir, tmp_path / "model", config)
    scored = score_with_model(tmp_path / "model", features_dir, tmp_path / "scored")
    assert scored.model_version == trained.model_version
    for name in ("impressions_eval", "candidates", "orders", "reviews", "items"):
        own = pl.read_parquet(tmp_path / "model" / "predictions" / f"{name}.parquet")
        again = pl.read_parquet(tmp_path / "scored" / "predictions" / f"{name}.parquet").select(own.columns)
        assert own.height > 0, name
        assert own.drop(pl.selectors.float()).equals(again.drop(pl.selectors.float())), name
        for column in own.select(pl.selectors.float()).columns:
            np.testing.assert_allclose(again[column].to_numpy(), own[column].to_numpy(), atol=1e-6, err_msg=name)
    for row in trained.metrics:
        assert scored.metric(row["task"], row["metric"]) == pytest.approx(row["value"], abs=1e-6), row


@pytest.mark.slow
def test_evaluate_champion_of_the_network_on_the_same_rows(features_dir: Path, tmp_path: Path, sqlite_url: str) -> None:
    import training.train as train_module

    config = TINY_NETWORK
    trained = train_module.train_multitask(features_dir, tmp_path / "model", config).to_dict()
    register_model(sqlite_url, DS, trained, None)
    evaluated = evaluate_champion(sqlite_url, "multitask", features_dir)
    assert {(r["task"], r["metric"]) for r in evaluated} >= {(r["task"], r["metric"]) for r in trained["metrics"]}
    by_key = {(r["task"], r["metric"]): r for r in evaluated}
    for row in trained["metrics"]:
        again = by_key[row["task"], row["metric"]]
        assert again["model_version"] == trained["model_version"] and again["n_rows"] == row["n_rows"]
        assert again["value"] == pytest.approx(row["value"], abs=1e-6)
    # The same model against itself on the same rows passes the gate.
    assert decide_promotion(trained["metrics"], evaluated).promote


@pytest.mark.slow
def test_selected_scoring_model_is_the_champion_after_a_rejection_and_the_nights_own_model_in_a_backfill(
    features_dir: Path, sqlite_url: str, tmp_path: Path
) -> None:
    from datetime import timedelta

    from training.gate import select_scoring_model

    champion = train_fraud_lgbm(features_dir, tmp_path / "champion", FraudLgbmConfig(num_boost_round=100))
    first = select_scoring_model(sqlite_url, DS, champion, features_dir, tmp_path / "unused")
    assert first.decision.status == "champion" and first.scoring.model_version == champion.model_version

    stump = FraudLgbmConfig(num_boost_round=1, early_stopping_rounds=1, num_leaves=2, feature_fraction=0.3, seed=11)
    worse = train_fraud_lgbm(features_dir, tmp_path / "worse", stump)
    kept = select_scoring_model(sqlite_url, DS, worse, features_dir, tmp_path / "champion_scores")
    assert kept.decision.status == "rejected" and kept.trained.model_version == worse.model_version
    assert kept.scoring.model_version == champion.model_version
    assert pl.read_parquet(tmp_path / "champion_scores" / "predictions" / "orders.parquet").equals(
        pl.read_parquet(tmp_path / "champion" / "predictions" / "orders.parquet").select("order_id", "split", "p_fraud")
    )

    # A backfill of an earlier day publishes the scores of the model trained as of that day.
    backfill = select_scoring_model(sqlite_url, DS - timedelta(days=5), worse, features_dir, tmp_path / "never")
    assert backfill.scoring.model_version == worse.model_version
    assert read_champion(sqlite_url, "fraud_lgbm")["model_version"] == champion.model_version
    assert not (tmp_path / "never").exists()

    # Weeks later a newer model is champion; reprocessing DS repeats that night's decision: the
    # champion the rejected model lost to scores the day again, with the same scores.
    register_model(sqlite_url, DS + timedelta(days=3), summary("newer", str(tmp_path / "newer"), "fraud_lgbm", fraud_auc=0.99), None)
    assert read_champion(sqlite_url, "fraud_lgbm")["model_version"] == "newer"
    again = select_scoring_model(sqlite_url, DS, worse, features_dir, tmp_path / "champion_scores_again")
    assert again.decision.recorded and again.scoring.model_version == champion.model_version
    assert pl.read_parquet(tmp_path / "champion_scores_again" / "predictions" / "orders.parquet").equals(
        pl.read_parquet(tmp_path / "champion_scores" / "predictions" / "orders.parquet")
    )


def test_a_champion_promoted_by_a_concurrent_night_after_the_gate_found_none_is_not_bypassed(warehouse_url: str) -> None:
    # Two nights of a backfill gate at once: both find no champion, one registers first.
    register_model(warehouse_url, DS, summary("v1", click_auc=0.78), None, champion_seen=None)
    with pytest.raises(ChampionChangedError, match="champion is now v1"):
        register_model(warehouse_url, DS, summary("v2", click_auc=0.5), None, champion_seen=None)
    assert "v2" not in registry_rows(warehouse_url)  # the retried gate evaluates v1 and decides then
    # The same champion as seen (present but unusable) still promotes without comparison, as before.
    promoted = register_model(warehouse_url, DS, summary("v3", click_auc=0.5), None, champion_seen="v1")
    assert promoted.status == "champion"
