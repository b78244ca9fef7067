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
from training.comparison import Evidence, compare_accuracy, compare_auc
from training.gate import GateResult, gate_model, score_with_model, select_scoring_model, unseen_rows_view
from training.promotion import decide_objective, decide_units
from training.registry import (
    ChampionChangedError,
    Registration,
    commit_registrations,
    read_champion,
    read_champions,
    register_model,
)

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


def evidence(objective: str, difference: float, half_width: float = 0.01, positives: int | None = 500) -> Evidence:
    """A comparison with the given difference and interval (champion at 0.80)."""
    metric = "accuracy" if objective == "category" else "auc"
    return Evidence(
        objective, metric, 0.80 + difference, 0.80, difference, difference - half_width, difference + half_width, 0.95, 5000, positives
    )


# --- paired comparisons ------------------------------------------------------------------------------


def test_delong_gives_sklearns_aucs_and_an_interval_as_wide_as_the_bootstrap() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = (rng.random(3000) < 0.2).astype(float)
    signal = rng.normal(size=3000) + labels
    new, old = signal + rng.normal(0, 0.5, 3000), signal + rng.normal(0, 0.7, 3000)
    compared = compare_auc("click", labels, new, old)
    assert compared.challenger == pytest.approx(roc_auc_score(labels, new))
    assert compared.champion == pytest.approx(roc_auc_score(labels, old))
    assert compared.n_positives == int(labels.sum()) and compared.low < compared.difference < compared.high
    draws = [rng.integers(0, 3000, 3000) for _ in range(200)]
    boot = [roc_auc_score(labels[i], new[i]) - roc_auc_score(labels[i], old[i]) for i in draws]
    assert (compared.high - compared.low) / 2 / 1.96 == pytest.approx(np.std(boot), rel=0.25)
    same = compare_auc("click", labels, new, new)  # one model against itself: exactly no difference
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0)
    assert compare_auc("fraud", np.ones(10), new[:10], old[:10]).difference is None  # one class: no AUC


def test_accuracy_difference_is_paired_over_the_same_items() -> None:
    new = np.array([1, 1, 1, 0] * 50, dtype=bool)
    old = np.array([1, 1, 0, 0] * 50, dtype=bool)
    compared = compare_accuracy("category", new, old)
    assert compared.difference == pytest.approx(0.25) and compared.low > 0 and compared.n_rows == 200


# --- the promotion rule --------------------------------------------------------------------------------

CHAMPION = {"model_version": "v1", "trained_ds": DS}


def test_the_rule_first_backfill_unevaluated() -> None:
    assert decide_objective("click", DS, None, None).promote  # no champion: the first model serves
    backfill = decide_objective("click", date(2026, 1, 20), evidence("click", 0.05), CHAMPION)
    assert not backfill.promote and "backfill" in backfill.reasons[0]
    unevaluated = decide_objective("click", DS, None, CHAMPION)
    assert unevaluated.promote and "could not be evaluated" in unevaluated.reasons[0]


def test_only_an_interval_wholly_below_the_tolerance_rejects() -> None:
    config = GateConfig(tolerance=0.01)
    worse = decide_objective("click", DS, evidence("click", -0.03, 0.01), CHAMPION, config)  # CI -0.04..-0.02
    assert not worse.promote and "worse than champion v1 beyond the tolerance 0.01" in worse.reasons[0]
    assert "-0.0300" in worse.reasons[0] and "95% CI -0.0400..-0.0200" in worse.reasons[0]
    assert worse.evidence["difference"] == pytest.approx(-0.03)
    # Worse on the point estimate, but the interval reaches above -tolerance: noise, promoted.
    assert decide_objective("click", DS, evidence("click", -0.015, 0.01), CHAMPION, config).promote
    assert decide_objective("category", DS, evidence("category", 0.02, 0.01, positives=None), CHAMPION, config).promote


def test_without_enough_evidence_the_champion_stays_until_it_is_old() -> None:
    config = GateConfig(min_positives=30, max_champion_age_days=7)
    thin = evidence("fraud", -0.2, 0.01, positives=11)
    kept = decide_objective("fraud", DS, thin, CHAMPION, config)
    assert not kept.promote and "not enough evidence (11 positives" in kept.reasons[0] and "keeps serving" in kept.reasons[0]
    old = {"model_version": "v1", "trained_ds": date(2026, 1, 20)}
    replaced = decide_objective("fraud", DS, thin, old, config)
    assert replaced.promote and "15 days old" in replaced.reasons[0]
    few_items = dataclasses.replace(evidence("category", 0.1, positives=None), n_rows=40)
    assert not decide_objective("category", DS, few_items, CHAMPION, GateConfig(min_rows=100)).promote


def test_click_and_purchase_are_served_by_one_model_so_they_are_decided_together() -> None:
    decisions = {
        "click": decide_objective("click", DS, evidence("click", 0.01), CHAMPION),
        "purchase": decide_objective("purchase", DS, evidence("purchase", -0.05), CHAMPION),
        "category": decide_objective("category", DS, evidence("category", 0.0, positives=None), CHAMPION),
    }
    decided = decide_units(decisions)
    assert [decided[o].promote for o in ("click", "purchase", "category")] == [False, False, True]
    assert "kept with the champion because purchase was not promoted" in decided["click"].reasons[0]


# --- the registry ------------------------------------------------------------------------------------


def registry_rows(warehouse_url: str) -> dict[tuple[str, str], str]:
    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn:
        frame = read_frame(conn, "SELECT model_version, objective, status FROM model_registry", table="model_registry")
    engine.dispose()
    return {(version, objective): status for version, objective, status in frame.iter_rows()}


def test_register_decides_per_objective_records_the_evidence_and_is_idempotent(warehouse_url: str) -> None:
    assert read_champions(warehouse_url, "multitask") == {}  # no table yet

    first = register_model(
        warehouse_url, DS, summary("v1", "/m/v1", click_auc=0.78, category_accuracy=0.9), {}, {"click": None, "category": None}
    )
    assert first.status == "champion" and first.objectives["click"].champion_version == "v1"
    assert read_champion(warehouse_url, "multitask") == {
        "model_version": "v1", "artifact_path": "/m/v1", "trained_ds": DS.isoformat(), "metrics": rows(click_auc=0.78),
    }

    # The next night's model is better on click and clearly worse on category: it serves click only.
    day2 = date(2026, 2, 5)
    seen = {"click": "v1", "category": "v1"}
    night = summary("v2", "/m/v2", click_auc=0.80, category_accuracy=0.7)
    compared = {"click": evidence("click", 0.02), "category": evidence("category", -0.2, positives=None)}
    partial = register_model(warehouse_url, day2, night, compared, seen)
    assert partial.status == "partial"
    assert partial.objectives["click"].status == "champion" and partial.objectives["click"].champion_version == "v2"
    assert partial.objectives["category"].status == "rejected"
    assert partial.objectives["category"].champion_artifact_path == "/m/v1"
    champions = read_champions(warehouse_url, "multitask")
    assert {objective: champion["model_version"] for objective, champion in champions.items()} == {"click": "v2", "category": "v1"}
    assert registry_rows(warehouse_url) == {
        ("v1", "click"): "challenger", ("v1", "category"): "champion", ("v2", "click"): "champion", ("v2", "category"): "rejected",
    }
    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn:
        recorded = read_frame(
            conn, "SELECT * FROM model_registry WHERE model_version = 'v2' AND objective = 'category'", table="model_registry"
        ).row(0, named=True)
    engine.dispose()
    assert json.loads(recorded["reasons_json"]) == partial.objectives["category"].reasons
    assert json.loads(recorded["evidence_json"])["difference"] == pytest.approx(-0.2)
    assert recorded["compared_with"] == "v1" and recorded["trained_ds"] == day2

    # Re-running the night registers nothing and returns that night's decisions, whatever came since.
    rerun = register_model(warehouse_url, day2, night, compared, {"click": "v2", "category": "v1"})
    assert rerun.recorded and rerun.objectives == partial.objectives and rerun.decisions == {}  # nothing left to write


def test_registry_refuses_changed_champions_and_keeps_one_champion_per_objective(warehouse_url: str) -> None:
    register_model(warehouse_url, DS, summary("v1", click_auc=0.78), {}, {"click": None})
    register_model(warehouse_url, DS, summary("v2", click_auc=0.79), {"click": evidence("click", 0.01)}, {"click": "v1"})
    with pytest.raises(ChampionChangedError, match="champion is now v2"):
        register_model(warehouse_url, DS, summary("v3", click_auc=0.9), {"click": evidence("click", 0.1)}, {"click": "v1"})
    assert ("v3", "click") not in registry_rows(warehouse_url)  # the failed registration left nothing behind
    # Two nights of a backfill gate at once: both found no champion of fraud_lgbm; the second must evaluate again.
    register_model(warehouse_url, DS, summary("l1", name="fraud_lgbm", fraud_auc=0.9), {}, {"fraud": None})
    with pytest.raises(ChampionChangedError, match="champion is now l1"):
        register_model(warehouse_url, DS, summary("l2", name="fraud_lgbm", fraud_auc=0.5), {}, {"fraud": None})
    # The champion seen but unusable (no evidence): promoted without comparison.
    assert register_model(warehouse_url, DS, summary("l3", name="fraud_lgbm", fraud_auc=0.5), {}, {"fraud": "l1"}).status == "champion"
    assert read_champion(warehouse_url, "multitask")["model_version"] == "v2"  # champions are per model name

    engine = create_warehouse_engine(warehouse_url)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE model_registry SET status = 'champion' WHERE model_version = 'v1'"))
    engine.dispose()


def test_a_registry_of_an_older_release_is_named_not_written_into(warehouse_url: str) -> None:
    from etl.warehouse import OutdatedTableError

    engine = create_warehouse_engine(warehouse_url)
    with engine.begin() as conn:  # the registry before decisions were per objective
        conn.exec_driver_sql(
            "CREATE TABLE model_registry (model_name TEXT NOT NULL, model_version TEXT NOT NULL, trained_ds DATE NOT NULL, "
            "artifact_path TEXT NOT NULL, status TEXT NOT NULL, metrics_json TEXT NOT NULL, created_at TIMESTAMP NOT NULL, "
            "reasons_json TEXT NULL, compared_with TEXT NULL, compared_metrics_json TEXT NULL, PRIMARY KEY (model_name, model_version))"
        )
    engine.dispose()
    with pytest.raises(OutdatedTableError, match=r"model_registry .* lacks the columns \['objective', 'evidence_json'\]"):
        register_model(warehouse_url, DS, summary("v1", click_auc=0.78), {}, {"click": None})


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


# The tiny features' holdouts (a few dozen frauds, ~50 items): evidence enough for these tests.
TESTING_GATE = GateConfig(min_positives=5, min_rows=20)


def gate_and_record(url: str, ds: date, summary: dict, features_dir: Path, config: GateConfig = GateConfig()) -> Registration:
    """The gate's decision, recorded as the night's publish would record it."""
    registration = gate_model(url, ds, summary, features_dir, config)
    commit_registrations(url, [registration])
    return registration


def select_and_record(url: str, ds: date, trained, features_dir: Path, champion_dir: Path, config: GateConfig) -> GateResult:
    """The gate's choice of scoring models, its decisions recorded as the night's publish would."""
    result = select_scoring_model(url, ds, trained, features_dir, champion_dir, config)
    commit_registrations(url, [result.decision])
    return result


@pytest.mark.slow
def test_gate_rejects_a_deliberately_worse_model_and_the_champion_keeps_scoring(
    lgbm_dir: Path, features_dir: Path, warehouse_url: str, tmp_path: Path
) -> None:
    champion = train_fraud_lgbm(features_dir, tmp_path / "champion", FraudLgbmConfig(num_boost_round=100)).to_dict()
    assert gate_and_record(warehouse_url, DS, champion, features_dir, TESTING_GATE).status == "champion"
    # One stump on one feature: a real model, deliberately much worse.
    stump = FraudLgbmConfig(num_boost_round=1, early_stopping_rounds=1, num_leaves=2, feature_fraction=0.3, seed=11)
    worse = train_fraud_lgbm(features_dir, tmp_path / "worse", stump).to_dict()
    decision = gate_and_record(warehouse_url, DS, worse, features_dir, TESTING_GATE)
    fraud = decision.objectives["fraud"]
    assert decision.status == "rejected" and fraud.champion_version == champion["model_version"]
    assert fraud.champion_artifact_path == str(tmp_path / "champion")
    assert "fraud: worse than champion" in fraud.reasons[0] and "CI" in fraud.reasons[0], fraud.reasons
    # The same model again (a re-run of the day) changes nothing and says it was recorded before.
    rerun = gate_and_record(warehouse_url, DS, worse, features_dir, TESTING_GATE)
    assert rerun.recorded and rerun.objectives == decision.objectives
    assert read_champion(warehouse_url, "fraud_lgbm")["model_version"] == champion["model_version"]
    # A model against a copy of itself: no difference at all, promoted.
    shutil.copytree(tmp_path / "champion", tmp_path / "twin")
    twin = {**champion, "model_version": "twin", "output_dir": str(tmp_path / "twin")}
    again = gate_and_record(warehouse_url, DS, twin, features_dir, TESTING_GATE)
    assert again.status == "champion" and "(+0.0000, 95% CI +0.0000..+0.0000" in again.reasons[0], again.reasons


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
def test_score_with_model_scores_the_saved_champion_and_an_unloadable_one_is_absent(
    lgbm_dir: Path, features_dir: Path, sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    champion_dir = tmp_path / "champion"
    shutil.copytree(lgbm_dir, champion_dir)
    trained = json.loads((champion_dir / "metrics.json").read_text())
    scored = score_with_model(champion_dir, features_dir, tmp_path / "scored")
    assert scored.metrics == trained["metrics"] and scored.model_version == trained["model_version"]
    assert pl.read_parquet(tmp_path / "scored" / "predictions" / "orders.parquet").equals(
        pl.read_parquet(champion_dir / "predictions" / "orders.parquet")
    )
    with pytest.raises(ValueError, match="new directory"):
        score_with_model(champion_dir, features_dir, champion_dir)

    register_model(sqlite_url, DS, {**trained, "output_dir": str(champion_dir)}, {}, {"fraud": None})
    (champion_dir / "model.txt").unlink()
    challenger = {**trained, "model_version": "next", "output_dir": str(lgbm_dir)}
    with caplog.at_level(logging.WARNING, logger="training.gate"):
        decision = gate_and_record(sqlite_url, DS, challenger, features_dir)
    assert "treated as absent" in caplog.text
    assert decision.status == "champion" and "could not be evaluated" in decision.reasons[0]


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
def test_the_network_is_gated_per_objective_and_each_objective_is_served_by_its_own_champion(
    features_dir: Path, sqlite_url: str, tmp_path: Path
) -> None:
    from training.train import train_multitask

    champion = train_multitask(features_dir, tmp_path / "champion", TINY_NETWORK)
    first = select_and_record(sqlite_url, DS, champion, features_dir, tmp_path / "unused", TESTING_GATE)
    assert first.decision.status == "champion" and set(first.scoring) == {"click", "purchase", "review", "category", "fraud"}
    # The same network retrained with another seed: no objective may be rejected on evidence.
    reseeded = train_multitask(features_dir, tmp_path / "reseeded", dataclasses.replace(TINY_NETWORK, seed=8))
    night = select_and_record(sqlite_url, DS, reseeded, features_dir, tmp_path / "kept", TESTING_GATE)
    on_evidence = [o for o, status in night.decision.objectives.items() if "beyond the tolerance" in " ".join(status.reasons)]
    assert on_evidence == [], night.decision.reasons
    # A night whose image head saw almost no images is worse on category only: the night's network
    # serves the rest and the champion keeps serving category, scored on today's features.
    blind = train_multitask(features_dir, tmp_path / "blind", dataclasses.replace(TINY_NETWORK, seed=9, item_ratio=0.02))
    assert blind.metric("category", "accuracy") < first.trained.metric("category", "accuracy") - 0.2
    blind_summary = blind
    mixed = select_and_record(sqlite_url, DS, blind_summary, features_dir, tmp_path / "champions", TESTING_GATE)
    assert mixed.decision.objectives["category"].status == "rejected", mixed.decision.reasons
    assert "category: worse than champion" in mixed.decision.objectives["category"].reasons[0]
    assert mixed.decision.objectives["click"].status == "champion"
    assert mixed.scoring["click"].model_version == blind.model_version
    served = read_champions(sqlite_url, "multitask")
    assert served["category"]["model_version"] != blind.model_version == served["click"]["model_version"]
    category_version = served["category"]["model_version"]
    assert mixed.scoring["category"].model_version == category_version
    assert mixed.scoring["category"].output_dir == tmp_path / "champions" / category_version
    assert (tmp_path / "champions" / category_version / "predictions" / "items.parquet").exists()


@pytest.mark.slow
def test_selected_scoring_model_is_the_champion_after_a_rejection_and_the_nights_own_model_in_a_backfill(
    features_dir: Path, sqlite_url: str, tmp_path: Path
) -> None:
    from datetime import timedelta

    champion = train_fraud_lgbm(features_dir, tmp_path / "champion", FraudLgbmConfig(num_boost_round=100))
    first = select_and_record(sqlite_url, DS, champion, features_dir, tmp_path / "unused", TESTING_GATE)
    assert first.decision.status == "champion" and first.scoring["fraud"].model_version == champion.model_version

    stump = FraudLgbmConfig(num_boost_round=1, early_stopping_rounds=1, num_leaves=2, feature_fraction=0.3, seed=11)
    worse = train_fraud_lgbm(features_dir, tmp_path / "worse", stump)
    kept = select_and_record(sqlite_url, DS, worse, features_dir, tmp_path / "champion_scores", TESTING_GATE)
    assert kept.decision.status == "rejected" and kept.trained.model_version == worse.model_version
    assert kept.scoring["fraud"].model_version == champion.model_version
    scored_dir = tmp_path / "champion_scores" / champion.model_version
    assert pl.read_parquet(scored_dir / "predictions" / "orders.parquet").equals(
        pl.read_parquet(tmp_path / "champion" / "predictions" / "orders.parquet").select("order_id", "split", "p_fraud")
    )

    # A backfill of an earlier day publishes the scores of the model trained as of that day.
    backfill = select_and_record(sqlite_url, DS - timedelta(days=5), worse, features_dir, tmp_path / "never", TESTING_GATE)
    assert backfill.scoring["fraud"].model_version == worse.model_version
    assert read_champion(sqlite_url, "fraud_lgbm")["model_version"] == champion.model_version
    assert not (tmp_path / "never").exists()

    # Weeks later a newer model is champion; reprocessing DS repeats that night's decision: the
    # champion the rejected model lost to scores the day again, with the same scores.
    newer = summary("newer", str(tmp_path / "newer"), "fraud_lgbm", fraud_auc=0.99)
    register_model(sqlite_url, DS + timedelta(days=3), newer, {}, {"fraud": champion.model_version})
    assert read_champion(sqlite_url, "fraud_lgbm")["model_version"] == "newer"
    again = select_and_record(sqlite_url, DS, worse, features_dir, tmp_path / "champion_scores_again", TESTING_GATE)
    assert again.decision.recorded and again.scoring["fraud"].model_version == champion.model_version
    assert pl.read_parquet(tmp_path / "champion_scores_again" / champion.model_version / "predictions" / "orders.parquet").equals(
        pl.read_parquet(scored_dir / "predictions" / "orders.parquet")
    )
