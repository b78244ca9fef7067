"""A night becomes effective only when its day publishes: the gate writes nothing, a publish that
fails leaves the score tables and the registry as they were, and a decision made stale by a
concurrent night is made again before it takes effect. Real LightGBM models, real warehouses."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from etl.warehouse import create_warehouse_engine, read_frame
from training.config import FraudLgbmConfig, GateConfig
from training.fraud_lgbm import train_fraud_lgbm
from training.gate import select_scoring_model
from training.publication import publish_night
from training.registry import read_champions, register_model

DS = date(2026, 2, 4)
GATE = GateConfig(min_positives=5, min_rows=20)  # the tiny features' holdout: evidence enough here


def registry_rows(url: str) -> list[tuple]:
    engine = create_warehouse_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.dialect.get_table_names(conn)
            if "model_registry" not in tables:
                return []
            frame = read_frame(conn, "SELECT model_version, objective, status FROM model_registry ORDER BY model_version, objective")
    finally:
        engine.dispose()
    return frame.rows()


def model_runs_versions(url: str) -> list[str]:
    engine = create_warehouse_engine(url)
    try:
        with engine.connect() as conn:
            return read_frame(conn, "SELECT DISTINCT model_version FROM model_runs ORDER BY 1")["model_version"].to_list()
    finally:
        engine.dispose()


@pytest.mark.slow
def test_decisions_take_effect_with_the_day_and_a_failed_publish_leaves_no_trace(
    features_dir: Path, warehouse_url: str, tmp_path: Path
) -> None:
    trained = train_fraud_lgbm(features_dir, tmp_path / "first", FraudLgbmConfig(num_boost_round=50))
    gate = select_scoring_model(warehouse_url, DS, trained, features_dir, tmp_path / "champions", GATE)
    assert gate.decision.status == "champion" and registry_rows(warehouse_url) == []  # decided, not written
    # The publish fails (the night's metric rows twice: a key violation in model_runs): nothing changes.
    broken = gate.trained.to_dict()
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        from etl.publish import publish_scores
        from training.registry import record_registration

        publish_scores(warehouse_url, DS, "run-1", [], features_dir, {}, [broken, broken],
                       before_commit=lambda conn: record_registration(conn, gate.decision))  # fmt: skip
    assert registry_rows(warehouse_url) == []
    # Published: the scores' metric rows and the decision land together.
    published = publish_night(warehouse_url, DS, "run-2", [], features_dir, [gate], {"fraud_lgbm": tmp_path / "champions"}, GATE)
    assert published["rows"] == {"model_runs": len(trained.metrics)}
    assert registry_rows(warehouse_url) == [(trained.model_version, "fraud", "champion")]
    assert model_runs_versions(warehouse_url) == [trained.model_version]
    # Publishing the day again (a retry) changes nothing in the registry.
    publish_night(warehouse_url, DS, "run-3", [], features_dir, [gate], {"fraud_lgbm": tmp_path / "champions"}, GATE)
    assert registry_rows(warehouse_url) == [(trained.model_version, "fraud", "champion")]


@pytest.mark.slow
def test_a_decision_made_stale_by_a_concurrent_night_is_made_again_before_it_takes_effect(
    features_dir: Path, sqlite_url: str, tmp_path: Path
) -> None:
    # Night A's gate finds no champion and would promote its model...
    night = train_fraud_lgbm(features_dir, tmp_path / "night", FraudLgbmConfig(num_boost_round=50))
    gate = select_scoring_model(sqlite_url, DS, night, features_dir, tmp_path / "champions", GATE)
    assert gate.decision.objectives["fraud"].status == "champion"
    # ...but before A publishes, night B (a later day) promotes its own model.
    other = train_fraud_lgbm(features_dir, tmp_path / "other", FraudLgbmConfig(num_boost_round=50, seed=9))
    register_model(sqlite_url, DS + timedelta(days=1), other.to_dict(), {}, {"fraud": None})
    published = publish_night(sqlite_url, DS, "run-a", [], features_dir, [gate], {"fraud_lgbm": tmp_path / "champions"}, GATE)
    # A decided again against B's champion: a day before B's, so a backfill that never replaces it.
    (final,) = published["gates"]
    assert final["decision"]["objectives"]["fraud"]["champion_version"] == other.model_version
    assert read_champions(sqlite_url, "fraud_lgbm")["fraud"]["model_version"] == other.model_version
    assert dict(((version, status) for version, _, status in registry_rows(sqlite_url))) == {
        night.model_version: "rejected", other.model_version: "champion",
    }
