"""The champion/challenger gate: evaluate on the same rows, register, and choose who scores the day.

Every night's model is a challenger. The gate re-evaluates the champion's saved artifacts and the
challenger on today's evaluation rows, leaving out fraud holdout orders the champion may have
trained on (``unseen_rows_view``), and registers the challenger (``training/registry.py``, which
applies ``training/promotion.py``'s rule). Then it says whose predictions day D publishes
(``select_scoring_model``): the challenger's when promoted, otherwise the champion's, scored on
today's features into ``runs/<D>/models/<model name>_champion``.

The nightly flow (one DAG task per model)::

    result = select_scoring_model(url, ds, trained, features_dir, layout.champion_dir(model_name))
    result.to_dict()   # a GateResult: small, fit for XCom; GateResult.from_dict reads it back
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from etl.contract import FRAUD_LGBM, MULTITASK
from etl.config import FeatureConfig
from etl.io import write_json_atomically
from etl.layout import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILES, feature_path, manifest_path, saved_model_name
from training.config import GateConfig
from training.evaluation import format_metric_rows
from training.registry import ChampionChangedError, Registration, read_champion, register_model
from training.summary import TrainingSummary

log = logging.getLogger(__name__)

GATE_ATTEMPTS = 3  # evaluations per gate when concurrent nights keep promoting champions


@dataclass(frozen=True)
class GateResult:
    """The gate's answer for one model of the night: the registration, the night's model, and the
    model whose predictions day D publishes (the night's own, or the champion's)."""

    decision: Registration
    trained: TrainingSummary
    scoring: TrainingSummary

    @property
    def model_name(self) -> str:
        return self.trained.model_name

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision.to_dict(), "trained": self.trained.to_dict(), "scoring": self.scoring.to_dict()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GateResult:
        return cls(
            decision=Registration.from_dict(values["decision"]),
            trained=TrainingSummary.from_dict(values["trained"]),
            scoring=TrainingSummary.from_dict(values["scoring"]),
        )


# --- evaluating saved artifacts ----------------------------------------------------------------------


def evaluate_saved_model(model_dir: Path, features_dir: Path) -> list[dict[str, Any]]:
    """Metric rows of the saved model in ``model_dir`` (network or LightGBM) on ``features_dir``'s eval rows."""
    model_name = saved_model_name(model_dir)
    if model_name == FRAUD_LGBM:
        from training.fraud_lgbm import evaluate_fraud_lgbm

        return evaluate_fraud_lgbm(Path(model_dir), Path(features_dir))
    if model_name == MULTITASK:
        from training.predict import evaluate_multitask  # torch: imported only when needed

        return evaluate_multitask(Path(model_dir), Path(features_dir))
    raise FileNotFoundError(f"{model_dir} holds no saved model (one of {list(WEIGHTS_FILES.values())} with {CONFIG_FILE})")


def load_saved_model(model_dir: Path, model_name: str) -> object:
    """Load a saved model of ``model_name`` (to check that this code can still read it)."""
    if model_name == FRAUD_LGBM:
        from training.fraud_lgbm import load_fraud_lgbm

        return load_fraud_lgbm(model_dir)
    from training.predict import load_multitask

    return load_multitask(model_dir)


def read_usable_champion(warehouse_url: str, model_name: str) -> dict[str, Any] | None:
    """``read_champion``, or None with a warning when its artifacts are missing or this code cannot load them."""
    return usable_champion(model_name, read_champion(warehouse_url, model_name))


def usable_champion(model_name: str, champion: dict[str, Any] | None) -> dict[str, Any] | None:
    """``champion`` (a ``read_champion`` dict), or None with a warning when its artifacts cannot be loaded."""
    if model_name not in WEIGHTS_FILES:
        raise ValueError(f"no evaluation for model {model_name!r}; known: {list(WEIGHTS_FILES)}")
    if champion is None:
        log.info("no %s champion registered yet", model_name)
        return None
    model_dir = Path(champion["artifact_path"])
    if saved_model_name(model_dir) != model_name:
        log.warning(
            "champion %s %s: no %s and %s in %s; treated as absent",
            model_name,
            champion["model_version"],
            WEIGHTS_FILES[model_name],
            CONFIG_FILE,
            model_dir,
        )
        return None
    try:  # an artifact written by older code may not load any more (new layers, renamed fields)
        load_saved_model(model_dir, model_name)
    except (RuntimeError, TypeError, KeyError, ValueError) as error:
        log.warning(
            "champion %s %s in %s cannot be loaded by this code (%s); treated as absent",
            model_name,
            champion["model_version"],
            model_dir,
            error,
        )
        return None
    return champion


@contextlib.contextmanager
def unseen_rows_view(features_dir: Path, champion_trained_ds: date) -> Iterator[Path]:
    """A temporary features directory whose fraud eval orders are only those the champion cannot have trained on.

    Fraud training includes young orders already labelled (fraud labels arrive early), so yesterday's
    model has trained on some of today's holdout frauds; on those rows it would look better than it
    is. An order is safe when it was already in the champion's own holdout or older, i.e. created
    before the champion's cut-off minus ``maturity_days`` (from today's manifest). The other objectives'
    eval rows (day D's impressions and reviews, the fixed item holdout) are never in a champion
    trained on an earlier day, so their files are linked unchanged.
    """
    features_dir = Path(features_dir)
    manifest = json.loads(manifest_path(features_dir).read_text())
    maturity_days = int(manifest.get("config", {}).get("maturity_days", FeatureConfig.maturity_days))
    champion_cutoff = datetime(
        champion_trained_ds.year, champion_trained_ds.month, champion_trained_ds.day
    ) + timedelta(days=1)
    safe_before = champion_cutoff - timedelta(days=maturity_days)
    # A champion of day D itself (a re-run with another config) trained on exactly today's train split.
    same_day = champion_trained_ds >= date.fromisoformat(manifest["ds"])
    with tempfile.TemporaryDirectory(prefix="shopmtl_same_rows_") as view:
        view_dir = Path(view)
        orders_path = feature_path(features_dir, "orders")
        for path in features_dir.iterdir():
            if path.name != orders_path.name or same_day:
                (view_dir / path.name).symlink_to(path.resolve())
        if orders_path.exists() and not same_day:
            orders = pl.read_parquet(orders_path)
            seen = (pl.col("split") == "eval") & (pl.col("created_at") >= safe_before)
            log.info(
                "same-rows view: %d of %d fraud eval orders were young at the champion's cut-off and are left out",
                orders.filter(seen).height,
                orders.filter(pl.col("split") == "eval").height,
            )
            orders.filter(~seen).write_parquet(feature_path(view_dir, "orders"))
        yield view_dir


def _tag(rows: list[dict[str, Any]], model_version: str) -> list[dict[str, Any]]:
    return [{**row, "model_version": model_version} for row in rows]


def evaluate_champion(warehouse_url: str, model_name: str, features_dir: Path) -> list[dict[str, Any]] | None:
    """The champion's metric rows on ``features_dir``'s eval rows it has not trained on (tagged with its version).

    None when there is no champion, or its artifacts are missing or cannot be loaded by this code
    (a warning says which); the registry then promotes the challenger without comparison. The fraud
    rows cover fewer orders than the challenger's own metrics (see ``unseen_rows_view``), so
    ``register_model`` skips them unless it also gets the challenger on the same rows: ``gate_model``
    does both.
    """
    champion = read_usable_champion(warehouse_url, model_name)
    if champion is None:
        return None
    with unseen_rows_view(features_dir, date.fromisoformat(champion["trained_ds"])) as view:
        rows = evaluate_saved_model(Path(champion["artifact_path"]), view)
    log.info("champion %s %s on today's rows: %s", model_name, champion["model_version"], format_metric_rows(rows))
    return _tag(rows, champion["model_version"])


def gate_model(
    warehouse_url: str,
    ds: date,
    summary: Mapping[str, Any],
    features_dir: Path,
    config: GateConfig = GateConfig(),
) -> Registration:
    """Evaluate champion and challenger on the same unseen rows, then ``register_model``.

    When a concurrent night promotes a champion between the evaluation and the registration, the
    gate evaluates again against the new one at once (up to ``GATE_ATTEMPTS`` times) rather than
    failing the task into Airflow's retry delay.
    """
    for attempt in range(1, GATE_ATTEMPTS):
        try:
            return _gate_once(warehouse_url, ds, summary, features_dir, config)
        except ChampionChangedError as error:
            log.info("%s (attempt %d of %d): evaluating against the new champion", error, attempt, GATE_ATTEMPTS)
    return _gate_once(warehouse_url, ds, summary, features_dir, config)  # the last attempt raises


def _gate_once(
    warehouse_url: str, ds: date, summary: Mapping[str, Any], features_dir: Path, config: GateConfig
) -> Registration:
    model_name = str(summary["model_name"])
    # One read: register_model compares the champion it finds under its lock with this one.
    seen = read_champion(warehouse_url, model_name)
    champion = usable_champion(model_name, seen)
    if champion is None:
        return register_model(
            warehouse_url, ds, summary, None, config, champion_seen=seen["model_version"] if seen else None
        )
    with unseen_rows_view(features_dir, date.fromisoformat(champion["trained_ds"])) as view:
        champion_rows = _tag(evaluate_saved_model(Path(champion["artifact_path"]), view), champion["model_version"])
        challenger_rows = evaluate_saved_model(Path(str(summary["output_dir"])), view)
    log.info(
        "on the same rows: champion %s %s | challenger %s %s",
        champion["model_version"],
        format_metric_rows(champion_rows),
        summary["model_version"],
        format_metric_rows(challenger_rows),
    )
    return register_model(
        warehouse_url, ds, summary, champion_rows, config, challenger_metrics_same_rows=challenger_rows
    )


def choose_scoring_model(decision: Registration, challenger_dir: str) -> str:
    """The artifact directory whose predictions are published: the challenger's if promoted, else the champion's."""
    if decision.status == "champion":
        return str(challenger_dir)
    if not decision.champion_artifact_path:
        raise ValueError(f"{decision.model_version} is {decision.status} but no champion is registered")
    return str(decision.champion_artifact_path)


def score_with_model(model_dir: Path, features_dir: Path, output_dir: Path) -> TrainingSummary:
    """Score ``features_dir`` with a saved model; write predictions like its trainer does; return a summary.

    Network: every prediction file training writes, for the objectives the saved model was trained
    on, through the same ``predict_features``. LightGBM: the orders prediction file. The summary's
    metrics are the day's evaluation, so it can stand in for a training summary in ``publish_scores``.
    """
    model_dir, features_dir, output_dir = Path(model_dir), Path(features_dir), Path(output_dir)
    if output_dir.resolve() == model_dir.resolve():
        raise ValueError(f"score into a new directory, not over the model's own artifacts in {model_dir}")
    model_name = saved_model_name(model_dir)
    if model_name == FRAUD_LGBM:
        from training.fraud_lgbm import score_fraud_lgbm

        summary = score_fraud_lgbm(model_dir, features_dir, output_dir)
    elif model_name == MULTITASK:
        from training.predict import score_multitask  # torch: imported only when needed

        summary = score_multitask(model_dir, features_dir, output_dir)
    else:
        raise FileNotFoundError(f"{model_dir} holds no saved model (one of {list(WEIGHTS_FILES.values())} with {CONFIG_FILE})")
    write_json_atomically(output_dir / METRICS_FILE, {**summary.to_dict(), "scored_with": str(model_dir)})
    log.info(
        "scored %s with %s %s: %s",
        features_dir,
        summary.model_name,
        summary.model_version,
        format_metric_rows(summary.metrics),
    )
    return summary


def select_scoring_model(
    warehouse_url: str,
    ds: date,
    trained: TrainingSummary,
    features_dir: Path,
    champion_output_dir: Path,
    config: GateConfig = GateConfig(),
) -> GateResult:
    """Gate the night's model and say which model's predictions day ``ds`` publishes.

    - promoted (or first) model: its own predictions;
    - rejected by the gate: the champion keeps scoring, on today's features, into ``champion_output_dir``;
    - a backfill (the champion was trained on a later day): the night's own model scores, because a
      model trained on later data would put the future into an old day's scores; the registry still
      records it as not promoted, so the newer champion stays in place;
    - a re-run of a day whose model is already registered: that night's decision again, against that
      night's champion (so reprocessing a day reproduces its scores).
    """
    decision = gate_model(warehouse_url, ds, trained.to_dict(), features_dir, config)
    # The champion the decision was made against, read under the registry lock (a champion read
    # before the gate may be stale when nights run concurrently, e.g. a backfill); for a re-run of the
    # day (retry, reprocessed backfill) that night's champion, so the day's scores come out the same
    # whatever was promoted since.
    champion_trained_ds = decision.champion_trained_ds
    is_backfill = champion_trained_ds is not None and ds < date.fromisoformat(champion_trained_ds)
    if decision.status != "rejected" or is_backfill:
        scoring = trained
    else:
        champion_dir = choose_scoring_model(decision, str(trained.output_dir))
        scoring = score_with_model(Path(champion_dir), features_dir, champion_output_dir)
    log.info(
        "%s %s is %s; day %s publishes the predictions of %s",
        trained.model_name, trained.model_version, decision.status, ds, scoring.model_version,
    )
    return GateResult(decision=decision, trained=trained, scoring=scoring)


def read_champion_dir(warehouse_url: str, model_name: str) -> Path | None:
    """The champion's artifact directory for a warm start, or None (first run, or its files are gone)."""
    champion = read_usable_champion(warehouse_url, model_name)
    return Path(champion["artifact_path"]) if champion else None
