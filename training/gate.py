"""The champion/challenger gate: compare on the same rows, decide, and choose who serves each objective.

Every night's model is a challenger, objective by objective. For each objective the gate scores that
objective's champion (its saved artifacts) on today's evaluation rows, leaving out fraud holdout
orders the champion may have trained on (``unseen_rows_view``), pairs its predictions with the
challenger's on the same rows, and measures the difference with a confidence interval
(``training/comparison.py``). The registry (``training/registry.py``, applying
``training/promotion.py``'s rule) decides per objective; the decisions are written only when the
day publishes (``training/publication.py``), so a run that fails later leaves the registry as it
was. Then the gate says whose
predictions day D publishes for each objective (``select_scoring_model``): the challenger's where
promoted, otherwise that objective's champion's, scored on today's features into
``runs/<D>/models/<model name>_champion/<version>``.

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

import numpy as np
import polars as pl

from etl.artifacts import load_artifact_store
from etl.contract import FRAUD_LGBM, MULTITASK
from etl.config import FeatureConfig
from etl.io import write_json_atomically
from etl.layout import (
    CONFIG_FILE,
    METRICS_FILE,
    WEIGHTS_FILES,
    feature_path,
    manifest_path,
    prediction_path,
    saved_model_name,
)
from training.comparison import Evidence, compare_accuracy, compare_auc
from training.config import GateConfig
from training.evaluation import (
    LABEL_JOINS,
    format_metric_rows,
    labelled_category_predictions,
    read_labelled_predictions,
)
from training.registry import (
    ChampionChangedError,
    Registration,
    decide_registration,
    read_champion,
    read_champions,
    trained_objectives,
)
from training.summary import TrainingSummary

log = logging.getLogger(__name__)

GATE_ATTEMPTS = 3  # evaluations per gate when concurrent nights keep promoting champions


@dataclass(frozen=True)
class GateResult:
    """The gate's answer for one model of the night: the registration (a decision per objective), the
    night's model, and per objective the model whose predictions day D publishes (the night's own,
    or that objective's champion's)."""

    decision: Registration
    trained: TrainingSummary
    scoring: dict[str, TrainingSummary]  # objective -> the scoring model's summary

    @property
    def model_name(self) -> str:
        return self.trained.model_name

    def scoring_dicts(self) -> dict[str, dict[str, Any]]:
        """objective -> the scoring summary as plain JSON (what ``etl.publish.publish_scores`` takes)."""
        return {objective: summary.to_dict() for objective, summary in self.scoring.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision.to_dict(), "trained": self.trained.to_dict(), "scoring": self.scoring_dicts()}

    def output_dirs(self) -> list[Path]:
        """The directories of the night's model and of every model scoring an objective."""
        return sorted({self.trained.output_dir, *(summary.output_dir for summary in self.scoring.values())})

    def champion_output_dirs(self) -> list[Path]:
        """Where champions scored the day (the scoring directories other than the night's model's)."""
        return sorted({summary.output_dir for summary in self.scoring.values()} - {self.trained.output_dir})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GateResult:
        return cls(
            decision=Registration.from_dict(values["decision"]),
            trained=TrainingSummary.from_dict(values["trained"]),
            scoring={objective: TrainingSummary.from_dict(summary) for objective, summary in values["scoring"].items()},
        )


# --- evaluating saved artifacts ----------------------------------------------------------------------


def load_saved_model(model_dir: Path, model_name: str) -> object:
    """Load a saved model of ``model_name`` (to check that this code can still read it)."""
    if model_name == FRAUD_LGBM:
        from training.fraud_lgbm import load_fraud_lgbm

        return load_fraud_lgbm(model_dir)
    from training.predict import load_multitask

    return load_multitask(model_dir)


def usable_champion(model_name: str, champion: dict[str, Any] | None) -> dict[str, Any] | None:
    """``champion`` (a ``read_champion`` dict), or None with a warning when its artifacts cannot be loaded."""
    if model_name not in WEIGHTS_FILES:
        raise ValueError(f"no evaluation for model {model_name!r}; known: {list(WEIGHTS_FILES)}")
    if champion is None:
        log.info("no %s champion registered yet", model_name)
        return None
    model_dir = load_artifact_store().fetch_folder(champion["artifact_path"])  # pulled from a shared store
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


def paired_evidence(objective: str, challenger_dir: Path, champion_dir: Path, features_dir: Path, confidence: float) -> Evidence:
    """Challenger minus champion on ``objective``'s main metric, over the evaluation rows both scored
    (their prediction files joined on the row key; ``features_dir`` gives the labels)."""
    if objective == "category":
        columns = ["item_id", "split", "listed_category", "predicted_category"]
        scored = [
            labelled_category_predictions(pl.read_parquet(prediction_path(model_dir, "items"), columns=columns)).select(
                "item_id", "correct"
            )
            for model_dir in (challenger_dir, champion_dir)
        ]
        paired = scored[0].join(scored[1], on="item_id", suffix="_champion")
        return compare_accuracy(objective, paired["correct"].to_numpy(), paired["correct_champion"].to_numpy(), confidence)
    join = LABEL_JOINS[objective]
    new, old = (read_labelled_predictions(objective, model_dir, features_dir) for model_dir in (challenger_dir, champion_dir))
    if new is None or old is None:
        return compare_auc(objective, np.zeros(0), np.zeros(0), np.zeros(0), confidence)
    paired = new.join(old.select(join.key, pl.col(join.probability).alias("champion")), on=join.key)
    return compare_auc(
        objective, paired[join.label].to_numpy(), paired[join.probability].to_numpy(), paired["champion"].to_numpy(), confidence
    )


def predict_eval_rows(model_dir: Path, features_dir: Path, output_dir: Path) -> None:
    """A saved model's prediction files of ``features_dir``'s evaluation rows (no candidates), as its trainer writes them."""
    model_name = saved_model_name(model_dir)
    if model_name == FRAUD_LGBM:
        from training.fraud_lgbm import score_fraud_lgbm

        score_fraud_lgbm(Path(model_dir), Path(features_dir), Path(output_dir))
    elif model_name == MULTITASK:
        from training.predict import predict_multitask_eval  # torch: imported only when needed

        predict_multitask_eval(Path(model_dir), Path(features_dir), Path(output_dir))
    else:
        raise FileNotFoundError(f"{model_dir} holds no saved model (one of {list(WEIGHTS_FILES.values())} with {CONFIG_FILE})")


def gather_evidence(
    objectives: list[str],
    champions: Mapping[str, Mapping[str, Any]],
    challenger_dir: Path,
    features_dir: Path,
    confidence: float,
) -> dict[str, Evidence]:
    """Per objective with a usable champion, the paired comparison on the rows that champion has not
    trained on; each distinct champion is scored once."""
    evidence: dict[str, Evidence] = {}
    versions = {champions[objective]["model_version"]: champions[objective] for objective in objectives if objective in champions}
    for version, champion in versions.items():
        served = [objective for objective in objectives if champions.get(objective, {}).get("model_version") == version]
        with (
            unseen_rows_view(features_dir, date.fromisoformat(champion["trained_ds"])) as view,
            tempfile.TemporaryDirectory(prefix="shopmtl_champion_") as scored,
        ):
            predict_eval_rows(load_artifact_store().local_path(champion["artifact_path"]), view, Path(scored))
            for objective in served:
                evidence[objective] = paired_evidence(objective, challenger_dir, Path(scored), view, confidence)
    return evidence


def gate_model(
    warehouse_url: str,
    ds: date,
    summary: Mapping[str, Any],
    features_dir: Path,
    config: GateConfig = GateConfig(),
) -> Registration:
    """Compare the challenger with each objective's champion on the same unseen rows, then decide
    (``decide_registration``; nothing is written until the day publishes).

    When a concurrent night promotes a champion between the comparison and the decision, the
    gate compares again against the new one at once (up to ``GATE_ATTEMPTS`` times) rather than
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
    objectives = trained_objectives(summary["metrics"])  # type: ignore[arg-type]
    # One read: register_model compares the champions it finds under its lock with these.
    seen = read_champions(warehouse_url, model_name)
    loadable: dict[str, bool] = {}  # champion version -> its artifacts load (checked once per version)
    for objective, champion in seen.items():
        if objective in objectives and champion["model_version"] not in loadable:
            loadable[champion["model_version"]] = usable_champion(model_name, champion) is not None
    usable = {o: champion for o, champion in seen.items() if o in objectives and loadable[champion["model_version"]]}
    evidence = gather_evidence(objectives, usable, Path(str(summary["output_dir"])), Path(features_dir), config.confidence)
    for objective, found in evidence.items():
        log.info("%s %s vs champion %s: %s", model_name, objective, usable[objective]["model_version"], found.describe())
    return decide_registration(
        warehouse_url,
        ds,
        summary,
        {objective: evidence.get(objective) for objective in objectives},
        {objective: seen[objective]["model_version"] if objective in seen else None for objective in objectives},
        config,
    )


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
    """Gate the night's model and say, per objective, which model's predictions day ``ds`` publishes.

    - promoted (or first) for the objective: the night's own predictions;
    - rejected for it: that objective's champion serves, scored on today's features into
      ``champion_output_dir/<champion version>`` (each champion scored once);
    - a backfill (the objective's champion was trained on a later day): the night's own model serves,
      because a model trained on later data would put the future into an old day's scores; the
      registry still records it as not promoted, so the newer champion stays in place;
    - a re-run of a day whose model is already registered: that night's decisions again, against that
      night's champions (so reprocessing a day reproduces its scores).
    """
    decision = gate_model(warehouse_url, ds, trained.to_dict(), features_dir, config)
    scoring: dict[str, TrainingSummary] = {}
    scored_champions: dict[str, TrainingSummary] = {}
    for objective, status in decision.objectives.items():
        is_backfill = status.champion_trained_ds is not None and ds < date.fromisoformat(status.champion_trained_ds)
        if status.status != "rejected" or is_backfill:
            scoring[objective] = trained
            continue
        if not status.champion_artifact_path or not status.champion_version:
            raise ValueError(f"{trained.model_version} is rejected for {objective} but no champion serves it")
        if status.champion_version not in scored_champions:
            scored_champions[status.champion_version] = score_with_model(
                load_artifact_store().local_path(status.champion_artifact_path),
                features_dir,
                Path(champion_output_dir) / status.champion_version,
            )
        scoring[objective] = scored_champions[status.champion_version]
    log.info(
        "%s %s: day %s publishes %s",
        trained.model_name,
        trained.model_version,
        ds,
        ", ".join(f"{objective} from {summary.model_version}" for objective, summary in scoring.items()),
    )
    return GateResult(decision=decision, trained=trained, scoring=scoring)


def read_champion_dir(warehouse_url: str, model_name: str) -> Path | None:
    """The artifact directory a warm start begins from: the champion of the model's first objective
    (click for the network), or None (first run, or its files are gone)."""
    champion = usable_champion(model_name, read_champion(warehouse_url, model_name))
    return load_artifact_store().local_path(champion["artifact_path"]) if champion else None
