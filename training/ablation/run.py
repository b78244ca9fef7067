"""Training every model of the ablation for one day, per seed, and scoring them alike.

Per seed, on one features directory (a nightly run's, or one built here from the warehouse):

- ``multitask``: the network on every objective the sources allow (``MultiTaskConfig``);
- ``single_task``: the same network and budget on each objective alone (only ``objectives`` differs);
- ``single_task_same_steps``: each objective alone with its batch shrunk to the joint run's optimizer
  steps per epoch, which separates "more updates" from "shared representations";
- ``scenario_alone``: the network on click and purchase trained on the thinnest scenario's impressions
  only, scored on that scenario's evaluation rows (does a thin scenario gain from the others?);
- the peers of ``training/peers``: LightGBM per objective, torch-rechub MMoE and PLE (when the
  ``peers`` extra is installed), TF-IDF + logistic regression, a two-layer CNN;
- ``oracle``: the demo generator's truth (``demo.oracle``), seed-free, when the warehouse has it.

Every model is scored by ``training/ablation/scores.py``; the network is paired with every other model.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from etl.build_features import build_features
from etl.config import FeatureConfig
from etl.contract import MULTITASK, OBJECTIVE_KIND, SOURCE_TABLES, available_objectives
from etl.extract import ExtractWindow, extract_sources
from etl.layout import RunLayout, feature_path, parquet_files
from training.ablation.scores import accuracy_vs_true, eval_scenarios, metric_rows, paired_rows, scored_rows
from training.config import FraudLgbmConfig, MultiTaskConfig

log = logging.getLogger(__name__)

ORACLE = "oracle"
# The ablation's models, in table order, with the objectives each can predict.
MODEL_OBJECTIVES: dict[str, tuple[str, ...]] = {
    MULTITASK: ("click", "purchase", "review", "category", "fraud"),
    "single_task": ("click", "purchase", "review", "category", "fraud"),
    "single_task_same_steps": ("click", "purchase", "review", "category", "fraud"),
    "scenario_alone": ("click", "purchase"),
    "lightgbm": ("click", "purchase", "review", "category", "fraud"),
    "mmoe_rechub": ("click", "purchase"),
    "ple_rechub": ("click", "purchase"),
    "tfidf_logistic": ("review",),
    "cnn_2layer": ("category",),
    ORACLE: ("click", "purchase", "review", "category", "fraud"),
}
PEERS = ("lightgbm", "mmoe_rechub", "ple_rechub", "tfidf_logistic", "cnn_2layer")


@dataclass(frozen=True)
class AblationResult:
    """Long tables: ``metrics`` {seed, model, task, scenario, metric, value, n_rows} and ``comparisons``
    {seed, model, task, scenario, metric, difference, low, high, n_rows, n_positives}: the network minus
    ``model`` on the rows both scored, with its 95 % interval."""

    metrics: pl.DataFrame
    comparisons: pl.DataFrame
    thin_scenario: str | None


def prepare_features(
    warehouse_url: str,
    ds: date,
    work_dir: Path,
    window_days: int = 28,
    sources: Sequence[str] = SOURCE_TABLES,
    feature_config: FeatureConfig = FeatureConfig(),
) -> Path:
    """Extract day ``ds``'s window and build its features under ``work_dir``, as the nightly run does."""
    layout = RunLayout(work_dir)
    extract_sources(warehouse_url, ExtractWindow(ds=ds, window_days=window_days), layout.extract_dir, tuple(sources))
    build_features(layout.extract_dir, layout.features_dir, ds, feature_config, tuple(sources))
    return layout.features_dir


def steps_per_epoch(config: MultiTaskConfig, n_train: Mapping[str, int]) -> int:
    """Optimizer steps of one epoch of the joint run: the batch kind needing most batches sets them."""
    batches = [
        math.ceil(round(getattr(config, ratio) * n_train[objective]) / getattr(config, batch))
        for objective, (ratio, batch) in objective_batch_fields().items()
        if n_train.get(objective)
    ]
    return max([*batches, 1])


def objective_batch_fields() -> dict[str, tuple[str, str]]:
    """The (ratio, batch size) config fields of each objective's batch kind, as the sampler reads them."""
    from training.sampler import KIND_FIELDS

    return {objective: KIND_FIELDS[kind] for objective, kind in OBJECTIVE_KIND.items()}


def same_steps_config(config: MultiTaskConfig, objective: str, n_train: int, steps: int) -> MultiTaskConfig:
    """``config`` for ``objective`` alone with its batch size shrunk so one epoch takes ``steps`` steps."""
    ratio, batch = objective_batch_fields()[objective]
    rows = round(getattr(config, ratio) * n_train)
    if math.ceil(rows / getattr(config, batch)) >= steps:  # the kind that sets the steps keeps its batch size
        return dataclasses.replace(config, objectives=(objective,))
    return dataclasses.replace(config, objectives=(objective,), **{batch: max(1, math.ceil(rows / steps))})


def thinnest_scenario(features_dir: Path) -> str | None:
    """The named scenario with the fewest training impressions (None without scenarios)."""
    files = parquet_files(feature_path(features_dir, "impressions"))
    if not files:
        return None
    counts = (
        pl.scan_parquet(files).filter((pl.col("split") == "train") & pl.col("scenario").is_not_null())
        .group_by("scenario").len().sort("len", "scenario").collect()
    )  # fmt: skip
    return counts.get_column("scenario")[0] if counts.height else None


def write_scenario_features(features_dir: Path, output_dir: Path, scenario: str) -> Path:
    """A copy of ``features_dir`` whose training impressions are ``scenario``'s alone (evaluation rows kept)."""
    impressions = feature_path(features_dir, "impressions")
    if output_dir.exists():
        shutil.rmtree(output_dir)
    shutil.copytree(features_dir, output_dir, ignore=lambda folder, _: [impressions.name] if Path(folder) == features_dir else [])
    target = feature_path(output_dir, "impressions")
    if impressions.is_dir():  # one file per day (build_features) or one file (older features)
        target.mkdir(parents=True)
    for path in parquet_files(impressions):
        kept = pl.read_parquet(path).filter((pl.col("split") != "train") | (pl.col("scenario") == scenario))
        kept.write_parquet(target / path.name if impressions.is_dir() else target)
    return output_dir


def rechub_installed() -> bool:
    """Whether the optional ``peers`` extra (torch-rechub) is importable."""
    return importlib.util.find_spec("torch_rechub") is not None


def train_models(
    features_dir: Path, layout: RunLayout, config: MultiTaskConfig, peers: Sequence[str], scenario_dir: Path | None
) -> dict[str, dict[str, Path]]:
    """Train one seed's models (``config.seed``, ``config.objectives``); returns {model: {objective: model directory}}."""
    from training.fraud_lgbm import train_fraud_lgbm  # heavy imports: only when training
    from training.peers import cnn, gbdt, rechub, tfidf
    from training.peers.rows import read_peer_rows
    from training.train import train_multitask

    seed, objectives = config.seed, config.objectives
    trained: dict[str, dict[str, Path]] = {}

    def timed(name: str, train: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = train()
        log.info("ablation seed %d: %s trained in %.1f s", seed, name, time.perf_counter() - started)
        return result

    def network(name: str, variant: MultiTaskConfig, source: Path = features_dir) -> dict[str, Any]:
        return timed(name, lambda: train_multitask(source, layout.model_dir(name), variant).to_dict())

    multi = network(MULTITASK, config)
    trained[MULTITASK] = {objective: layout.model_dir(MULTITASK) for objective in objectives}
    trained["single_task"] = {}
    for objective in objectives:
        if objectives == (objective,):  # a deployment with one objective: the network is its single-task model
            trained["single_task"][objective] = layout.model_dir(MULTITASK)
            continue
        network(f"single_{objective}", dataclasses.replace(config, objectives=(objective,)))
        trained["single_task"][objective] = layout.model_dir(f"single_{objective}")
    steps = steps_per_epoch(config, multi["n_train"])
    trained["single_task_same_steps"] = {}
    for objective in objectives:
        variant = same_steps_config(config, objective, multi["n_train"].get(objective, 0), steps)
        if variant == dataclasses.replace(config, objectives=(objective,)):  # the same (deterministic) model
            trained["single_task_same_steps"][objective] = trained["single_task"][objective]
            continue
        network(f"same_steps_{objective}", variant)
        trained["single_task_same_steps"][objective] = layout.model_dir(f"same_steps_{objective}")
    impression_objectives = tuple(name for name in ("click", "purchase") if name in objectives)
    if scenario_dir is not None and impression_objectives:
        network("scenario_alone", dataclasses.replace(config, objectives=impression_objectives), scenario_dir)
        trained["scenario_alone"] = {objective: layout.model_dir("scenario_alone") for objective in impression_objectives}

    rows = read_peer_rows(features_dir, config.validation)
    peer_dir = layout.model_dir
    trainers: dict[tuple[str, str], Callable[[], Any]] = {
        ("lightgbm", "impressions"): lambda: gbdt.train_impression_gbdt(rows, peer_dir("lightgbm"), gbdt.GbdtConfig(seed=seed)),
        ("lightgbm", "review"): lambda: gbdt.train_review_gbdt(rows, peer_dir("lightgbm"), gbdt.GbdtConfig(seed=seed)),
        ("lightgbm", "category"): lambda: gbdt.train_category_gbdt(
            rows, peer_dir("lightgbm"), gbdt.GbdtConfig(seed=seed), config.network.image_size
        ),
        ("lightgbm", "fraud"): lambda: train_fraud_lgbm(features_dir, peer_dir("lightgbm"), FraudLgbmConfig(seed=seed)),
        ("mmoe_rechub", "impressions"): lambda: rechub.train_rechub("mmoe", rows, peer_dir("mmoe_rechub"), rechub.RechubConfig(seed=seed)),
        ("ple_rechub", "impressions"): lambda: rechub.train_rechub("ple", rows, peer_dir("ple_rechub"), rechub.RechubConfig(seed=seed)),
        ("tfidf_logistic", "review"): lambda: tfidf.train_review_tfidf(rows, peer_dir("tfidf_logistic"), seed),
        ("cnn_2layer", "category"): lambda: cnn.train_category_cnn(
            rows, peer_dir("cnn_2layer"), cnn.CnnConfig(seed=seed, image_size=config.network.image_size)
        ),
    }
    for (peer, part), train in trainers.items():
        covered = impression_objectives if part == "impressions" else tuple(name for name in (part,) if name in objectives)
        if peer not in peers or not covered:
            continue
        timed(f"{peer} ({part})", train)
        trained.setdefault(peer, {}).update({objective: peer_dir(peer) for objective in covered})
    return trained


def score_models(
    seed: int, trained: Mapping[str, Mapping[str, Path]], features_dir: Path, thin_scenario: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Metric rows of every model and objective, and the network paired with every other model."""
    scenarios = eval_scenarios(features_dir)
    metrics: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    read: dict[tuple[str, Path], pl.DataFrame | None] = {}

    def scored_of(objective: str, model_dir: Path) -> pl.DataFrame | None:
        """A model's scored rows, read once (the network and the oracle are read for every other model)."""
        if (objective, model_dir) not in read:
            read[objective, model_dir] = scored_rows(objective, model_dir, features_dir, scenarios)
        return read[objective, model_dir]

    oracle_category = scored_of("category", trained[ORACLE]["category"]) if "category" in trained.get(ORACLE, {}) else None
    for model, directories in trained.items():
        for objective, model_dir in directories.items():
            scored = scored_of(objective, model_dir)
            if scored is None:
                continue
            only = thin_scenario if model == "scenario_alone" else None
            metrics += [{"seed": seed, **row} for row in metric_rows(model, objective, scored, only)]
            if objective == "category" and oracle_category is not None and model != ORACLE:
                metrics.append({"seed": seed, **accuracy_vs_true(model, scored, oracle_category)})
            if model == MULTITASK:
                continue
            network = scored_of(objective, trained[MULTITASK][objective])
            for scenario, evidence in paired_rows(objective, network, scored, only):
                comparisons.append(
                    {"seed": seed, "model": model, "task": objective, "scenario": scenario, "metric": evidence.metric,
                     "difference": evidence.difference, "low": evidence.low, "high": evidence.high,
                     "n_rows": evidence.n_rows, "n_positives": evidence.n_positives}
                )  # fmt: skip
    return metrics, comparisons


def run_ablation(
    warehouse_url: str,
    ds: date,
    work_dir: Path,
    window_days: int = 28,
    seeds: Sequence[int] = (7,),
    config: MultiTaskConfig | None = None,
    sources: Sequence[str] = SOURCE_TABLES,
    feature_config: FeatureConfig = FeatureConfig(),
    features_dir: Path | None = None,
    peers: Sequence[str] = PEERS,
) -> AblationResult:
    """Every model of the ablation, per seed, scored on day ``ds``'s evaluation rows.

    ``features_dir``: reuse a nightly run's features (``<run>/features``) instead of extracting the
    window and building them under ``work_dir``. ``peers``: which of ``PEERS`` to train (torch-rechub's
    only when installed). The oracle reads the demo generator's truth tables; it is absent elsewhere.
    """
    from demo.oracle import write_oracle_predictions

    work_dir = Path(work_dir)
    if features_dir is None:
        features_dir = prepare_features(warehouse_url, ds, work_dir, window_days, sources, feature_config)
    config = config or MultiTaskConfig()
    objectives = tuple(name for name in config.objectives if name in available_objectives(list(sources)))
    if not objectives:
        raise ValueError(f"none of the objectives {config.objectives} can be trained from the sources {list(sources)}")
    if not rechub_installed() and {"mmoe_rechub", "ple_rechub"} & set(peers):
        log.warning("torch-rechub is not installed (pip install '.[peers]'): no MMoE/PLE peers")
        peers = [peer for peer in peers if not peer.endswith("_rechub")]
    thin = thinnest_scenario(features_dir) if {"click", "purchase"} & set(objectives) else None
    scenario_dir = write_scenario_features(features_dir, work_dir / f"features_{thin}", thin) if thin else None
    oracle_dir = work_dir / "models" / ORACLE
    shutil.rmtree(oracle_dir, ignore_errors=True)
    covered = write_oracle_predictions(warehouse_url, features_dir, oracle_dir)
    metrics: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    for seed in seeds:
        layout = RunLayout(work_dir / f"seed_{seed}")
        trained = train_models(features_dir, layout, dataclasses.replace(config, seed=seed, objectives=objectives), peers, scenario_dir)
        trained[ORACLE] = {objective: oracle_dir for objective in covered if objective in objectives}
        seed_metrics, seed_comparisons = score_models(seed, trained, features_dir, thin)
        metrics += seed_metrics
        comparisons += seed_comparisons
    return AblationResult(
        metrics=pl.DataFrame(metrics, schema=METRIC_SCHEMA), comparisons=pl.DataFrame(comparisons, schema=COMPARISON_SCHEMA),
        thin_scenario=thin,
    )  # fmt: skip


METRIC_SCHEMA = {
    "seed": pl.Int64, "model": pl.String, "task": pl.String, "scenario": pl.String, "metric": pl.String,
    "value": pl.Float64, "n_rows": pl.Int64,
}  # fmt: skip
COMPARISON_SCHEMA = {
    "seed": pl.Int64, "model": pl.String, "task": pl.String, "scenario": pl.String, "metric": pl.String,
    "difference": pl.Float64, "low": pl.Float64, "high": pl.Float64, "n_rows": pl.Int64, "n_positives": pl.Int64,
}  # fmt: skip
