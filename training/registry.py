"""Champion and challenger: which trained model version scores, recorded in ``model_registry``.

Every night's model is a challenger. It becomes champion only when no task's day-D metric is worse
than the current champion's ON THE SAME ROWS (the champion's saved artifacts re-evaluated on today's
features) by more than ``RegistryConfig.tolerance``; otherwise it is recorded as ``rejected`` with
the reasons, and the champion keeps scoring. The first model of a name becomes champion. A promoted
model's predecessor is kept as ``challenger`` (history).

The nightly flow (one DAG task per model)::

    decision = gate_model(url, ds, summary, features_dir)     # small dict, fit for XCom
    scoring_dir = choose_scoring_model(decision, summary["output_dir"])
    if scoring_dir != summary["output_dir"]:                   # rejected: the champion scores today
        scored = score_with_model(scoring_dir, features_dir, run_dir / "models" / "multitask_champion").to_dict()

``gate_model`` evaluates the champion's saved artifacts and the challenger on the same rows, leaving
out fraud holdout orders the champion may have trained on (``unseen_rows_view``), then calls
``register_model``; ``evaluate_champion`` + ``register_model`` are its two halves. A champion
trained on a later day than the challenger is never replaced by it (a backfill of an old day must
not displace a newer model).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.features import FeatureConfig
from etl.warehouse import bind_date, bind_timestamp, create_tables, create_warehouse_engine, mask_url, read_frame
from training.config import RegistryConfig
from training.fraud_baseline import MODEL_FILE as LGBM_MODEL_FILE
from training.fraud_baseline import MODEL_NAME as LGBM_MODEL_NAME
from training.fraud_baseline import evaluate_fraud_baseline, fraud_eval_metrics, load_fraud_baseline, predict_fraud
from training.metrics import TrainingSummary, write_json
from training.multitask import MODEL_FILE as MULTITASK_MODEL_FILE
from training.multitask import load_multitask

log = logging.getLogger(__name__)

TABLE = "model_registry"
MULTITASK_MODEL_NAME = "multitask"  # = training.train_multitask.MODEL_NAME (not imported: that module is heavy)
CONFIG_FILE = "config.json"  # both model kinds keep their config next to the weights under this name
# Comparisons treat differences this small as equal, so 0.80 vs 0.79 with tolerance 0.01 is "within".
FLOAT_SLACK = 1e-12


GATE_ATTEMPTS = 3  # evaluations per gate when concurrent nights keep promoting champions
_NOT_GIVEN = object()  # register_model's champion_seen when the caller does not say


class ChampionChangedError(RuntimeError):
    """The champion changed between its evaluation on today's rows and the registration (evaluate again)."""


@dataclass(frozen=True)
class Decision:
    """The gate's verdict: promote or not, and why (task, metric, both values, tolerance)."""

    promote: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


# --- the gate (pure) ---------------------------------------------------------------------------------


def index_metrics(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """Metric rows keyed by (task, metric); a key given twice is an error (which one would count?)."""
    indexed: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in rows:
        key = (str(row["task"]), str(row["metric"]))
        if key in indexed:
            raise ValueError(f"metric rows hold {key[0]}.{key[1]} twice")
        indexed[key] = row
    return indexed


def _usable(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def decide_promotion(
    challenger_metrics: list[dict[str, Any]],
    champion_metrics: list[dict[str, Any]] | None,
    config: RegistryConfig = RegistryConfig(),
) -> Decision:
    """Promote unless some task's metric is worse than the champion's (same rows) by more than the tolerance.

    ``champion_metrics`` None means there is no champion: the first model is promoted. Only metrics
    present in both lists, with a direction in ``config`` and non-null values, are compared; a pair
    whose ``n_rows`` differ was not measured on the same rows and is skipped with a note.
    """
    if champion_metrics is None:
        return Decision(True, ["no champion to compare with: the first model becomes champion"])
    challenger, champion = index_metrics(challenger_metrics), index_metrics(champion_metrics)
    rejections: list[str] = []
    notes: list[str] = []
    compared = 0
    for task, metric in sorted(challenger.keys() & champion.keys()):
        if metric in config.higher_is_better:
            higher = True
        elif metric in config.lower_is_better:
            higher = False
        else:
            continue
        new_row, old_row = challenger[task, metric], champion[task, metric]
        new, old = new_row["value"], old_row["value"]
        if not (_usable(new) and _usable(old)):
            continue
        n_new, n_old = new_row.get("n_rows"), old_row.get("n_rows")
        if n_new is not None and n_old is not None and n_new != n_old:
            notes.append(f"{task} {metric} not compared: {n_new} challenger rows vs {n_old} champion rows")
            continue
        compared += 1
        worse_by = (old - new) if higher else (new - old)
        if worse_by > config.tolerance + FLOAT_SLACK:
            rejections.append(
                f"{task} {metric}: challenger {new:.4f} vs champion {old:.4f} "
                f"({'higher' if higher else 'lower'} is better), worse by {worse_by:.4f} > tolerance {config.tolerance}"
            )
    if rejections:
        return Decision(False, rejections + notes)
    return Decision(
        True, [f"{compared} metrics compared: none worse than the champion's by more than {config.tolerance}", *notes]
    )


# --- the registry table ------------------------------------------------------------------------------


def _lock_registry(conn: Connection) -> None:
    """Serialise registrations, so two nightly runs cannot both read the old champion and both promote."""
    if conn.dialect.name == "postgresql":
        # Conflicts with itself and with writers, not with plain reads (analysts, read_champion).
        conn.execute(sa.text(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE"))
    # SQLite: the INSERT that follows takes the database's write lock before anything is read.


def _read_rows(conn: Connection, where: str, params: Mapping[str, Any]) -> pl.DataFrame:
    return read_frame(conn, f"SELECT * FROM {TABLE} WHERE {where}", params, table=TABLE)


def _champion_row(conn: Connection, model_name: str) -> dict[str, Any] | None:
    rows = _read_rows(conn, "model_name = :name AND status = 'champion'", {"name": model_name})
    return rows.row(0, named=True) if rows.height else None


def _table_exists(conn: Connection) -> bool:
    return sa.inspect(conn).has_table(TABLE)


def read_champion(warehouse_url: str, model_name: str) -> dict[str, Any] | None:
    """The current champion of ``model_name``: {model_version, artifact_path, trained_ds (ISO), metrics}; None if none."""
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            row = _champion_row(conn, model_name) if _table_exists(conn) else None
    finally:
        engine.dispose()
    if row is None:
        return None
    return {
        "model_version": row["model_version"],
        "artifact_path": row["artifact_path"],
        "trained_ds": row["trained_ds"].isoformat(),
        "metrics": json.loads(row["metrics_json"]),
    }


def _version_row(conn: Connection, model_name: str, model_version: str) -> dict[str, Any] | None:
    rows = _read_rows(conn, "model_name = :name AND model_version = :version", {"name": model_name, "version": model_version})
    return rows.row(0, named=True) if rows.height else None


def _result(
    model_name: str,
    model_version: str,
    status: str,
    champion: dict[str, Any] | None,
    reasons: list[str],
    recorded: bool = False,
) -> dict[str, Any]:
    return {
        "model_name": model_name,
        "model_version": model_version,
        "status": status,
        "champion_version": champion["model_version"] if champion else None,
        "champion_artifact_path": champion["artifact_path"] if champion else None,
        "champion_trained_ds": champion["trained_ds"].isoformat() if champion else None,
        "reasons": reasons,
        # True when this version was registered before (a re-run): champion_* then say what they said
        # that night (the model itself if promoted, the champion it lost to if rejected), not today's.
        "recorded": recorded,
    }


def register_model(
    warehouse_url: str,
    ds: date,
    summary: Mapping[str, Any],
    champion_metrics_same_rows: list[dict[str, Any]] | None,
    config: RegistryConfig = RegistryConfig(),
    challenger_metrics_same_rows: list[dict[str, Any]] | None = None,
    champion_seen: str | None | object = _NOT_GIVEN,
) -> dict[str, Any]:
    """Record a trained model, apply the gate, and promote it or reject it, in one transaction.

    ``summary`` is ``TrainingSummary.to_dict()``; ``champion_metrics_same_rows`` the current
    champion's metrics on the same evaluation rows (``evaluate_champion``), None when there is no
    champion or it cannot be evaluated. The gate compares them with ``challenger_metrics_same_rows``
    when given (``gate_model``), else with the summary's metrics. Registering a version that is
    already registered changes nothing and returns its recorded decision (re-running a day).
    ``champion_seen`` (``gate_model``): the champion version, or None, the caller saw when it found
    nothing to evaluate; another champion by now (a concurrent night promoted one) is a
    ``ChampionChangedError``, not a promotion without comparison.
    Returns {model_name, model_version, status, champion_version, champion_artifact_path, reasons}.
    """
    model_name, model_version = str(summary["model_name"]), str(summary["model_version"])
    metrics = list(summary["metrics"])  # type: ignore[arg-type]
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            exists = _table_exists(conn)
        if not exists:  # DDL only once: concurrent CREATE TABLE IF NOT EXISTS can collide on PostgreSQL
            create_tables(engine, areas=["ops"])
        with engine.begin() as conn:
            _lock_registry(conn)
            # The row goes in first as a placeholder 'challenger' (invisible until commit): its insert
            # takes SQLite's write lock, and its conflict tells a re-run apart from a new model.
            inserted = conn.execute(
                sa.text(
                    f"INSERT INTO {TABLE} (model_name, model_version, trained_ds, artifact_path, status, "
                    "metrics_json, created_at) VALUES (:name, :version, :ds, :path, 'challenger', :metrics, :now) "
                    "ON CONFLICT (model_name, model_version) DO NOTHING"
                ),
                {
                    "name": model_name,
                    "version": model_version,
                    "ds": bind_date(conn, ds),
                    "path": str(summary["output_dir"]),
                    "metrics": json.dumps(metrics, sort_keys=True),
                    "now": bind_timestamp(conn, datetime.now(UTC)),
                },
            ).rowcount
            champion = _champion_row(conn, model_name)
            if not inserted:
                existing = _version_row(conn, model_name, model_version)
                reasons = json.loads(existing["reasons_json"] or "[]")
                # As that night said: a promoted model named itself, a rejected one the champion it lost to.
                if existing["status"] != "rejected":
                    judged_against = existing
                elif existing["compared_with"]:
                    judged_against = _version_row(conn, model_name, existing["compared_with"])
                else:
                    judged_against = None
                log.info(
                    "%s %s is already registered as %s (judged against %s): nothing changed",
                    model_name, model_version, existing["status"], existing["compared_with"],
                )
                return _result(model_name, model_version, existing["status"], judged_against, reasons, recorded=True)

            _check_champion_unchanged(champion, champion_metrics_same_rows)
            if champion_seen is not _NOT_GIVEN and (champion["model_version"] if champion else None) != champion_seen:
                raise ChampionChangedError(
                    f"no champion was evaluated ({champion_seen} seen) but the champion is now "
                    f"{champion['model_version'] if champion else None}: evaluate again"
                )
            compared_metrics = metrics if challenger_metrics_same_rows is None else challenger_metrics_same_rows
            decision = _decide(ds, compared_metrics, champion, champion_metrics_same_rows, config)
            params = {
                "name": model_name,
                "version": model_version,
                "reasons": json.dumps(decision.reasons),
                "compared_with": champion["model_version"] if champion else None,
                "compared": None
                if champion_metrics_same_rows is None
                else json.dumps(
                    {"champion": _plain(champion_metrics_same_rows), "challenger": _plain(compared_metrics)},
                    sort_keys=True,
                ),
                "status": "champion" if decision.promote else "rejected",
            }
            if decision.promote:
                # Demote first: the partial unique index allows one champion per name at any moment.
                conn.execute(
                    sa.text(
                        f"UPDATE {TABLE} SET status = 'challenger' WHERE model_name = :name "
                        "AND status = 'champion' AND model_version <> :version"
                    ),
                    params,
                )
            conn.execute(
                sa.text(
                    f"UPDATE {TABLE} SET status = :status, reasons_json = :reasons, "
                    "compared_with = :compared_with, compared_metrics_json = :compared "
                    "WHERE model_name = :name AND model_version = :version"
                ),
                params,
            )
            new_champion = _champion_row(conn, model_name)
    finally:
        engine.dispose()

    result = _result(model_name, model_version, params["status"], new_champion, decision.reasons)
    if decision.promote:
        log.info(
            "%s %s is the new champion (was %s) in %s: %s",
            model_name,
            model_version,
            params["compared_with"],
            mask_url(warehouse_url),
            "; ".join(decision.reasons),
        )
    else:
        log.warning(
            "%s %s REJECTED, champion %s keeps scoring: %s",
            model_name,
            model_version,
            params["compared_with"],
            "; ".join(decision.reasons),
        )
    return result


def _plain(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{key: row[key] for key in ("task", "metric", "value", "n_rows") if key in row} for row in rows]


def _check_champion_unchanged(champion: dict[str, Any] | None, champion_metrics: list[dict[str, Any]] | None) -> None:
    """Refuse to decide on metrics of a champion that is no longer the champion (a concurrent promotion)."""
    evaluated = {row["model_version"] for row in champion_metrics or [] if row.get("model_version")}
    current = champion["model_version"] if champion else None
    if evaluated and evaluated != {current}:
        raise ChampionChangedError(
            f"champion metrics are of {sorted(evaluated)} but the champion is now {current}: evaluate again"
        )


def _decide(
    ds: date,
    metrics: list[dict[str, Any]],
    champion: dict[str, Any] | None,
    champion_metrics: list[dict[str, Any]] | None,
    config: RegistryConfig,
) -> Decision:
    """decide_promotion, plus what only the registry knows: the champion's day and whether it was evaluated."""
    if champion is None:
        return decide_promotion(metrics, None, config)
    if ds < champion["trained_ds"]:
        return Decision(
            False,
            [
                f"trained on {ds}, before champion {champion['model_version']} "
                f"(trained on {champion['trained_ds']}): a backfill never replaces a newer champion"
            ],
        )
    if champion_metrics is None:
        log.warning(
            "champion %s was not evaluated on today's rows: promoting without comparison", champion["model_version"]
        )
        return Decision(
            True,
            [
                f"champion {champion['model_version']} could not be evaluated on today's rows "
                "(artifacts missing or unloadable): promoted without comparison"
            ],
        )
    return decide_promotion(metrics, champion_metrics, config)


# --- evaluating and scoring with saved artifacts -----------------------------------------------------


def _model_file(model_dir: Path) -> str | None:
    """Which kind of saved model ``model_dir`` holds, by its weights file."""
    for name in (MULTITASK_MODEL_FILE, LGBM_MODEL_FILE):
        if (model_dir / name).is_file() and (model_dir / CONFIG_FILE).is_file():
            return name
    return None


def evaluate_saved_model(model_dir: Path, features_dir: Path) -> list[dict[str, Any]]:
    """Metric rows of the saved model in ``model_dir`` (network or LightGBM) on ``features_dir``'s eval rows."""
    model_dir = Path(model_dir)
    kind = _model_file(model_dir)
    if kind == LGBM_MODEL_FILE:
        return evaluate_fraud_baseline(model_dir, Path(features_dir))
    if kind == MULTITASK_MODEL_FILE:
        from training.train_multitask import evaluate_multitask  # heavy: imported only when needed

        return evaluate_multitask(model_dir, Path(features_dir))
    raise FileNotFoundError(
        f"{model_dir} holds neither {MULTITASK_MODEL_FILE} nor {LGBM_MODEL_FILE} with {CONFIG_FILE}"
    )


def read_usable_champion(warehouse_url: str, model_name: str) -> dict[str, Any] | None:
    """``read_champion``, or None with a warning when its artifacts are missing or this code cannot load them."""
    return usable_champion(model_name, read_champion(warehouse_url, model_name))


def usable_champion(model_name: str, champion: dict[str, Any] | None) -> dict[str, Any] | None:
    """``champion`` (a ``read_champion`` dict), or None with a warning when its artifacts cannot be loaded."""
    expected = {MULTITASK_MODEL_NAME: MULTITASK_MODEL_FILE, LGBM_MODEL_NAME: LGBM_MODEL_FILE}.get(model_name)
    if expected is None:
        raise ValueError(f"no evaluation for model {model_name!r}; known: {MULTITASK_MODEL_NAME}, {LGBM_MODEL_NAME}")
    if champion is None:
        log.info("no %s champion registered yet", model_name)
        return None
    model_dir = Path(champion["artifact_path"])
    if _model_file(model_dir) != expected:
        log.warning(
            "champion %s %s: no %s and %s in %s; treated as absent",
            model_name,
            champion["model_version"],
            expected,
            CONFIG_FILE,
            model_dir,
        )
        return None
    try:  # an artifact written by older code may not load any more (new layers, renamed fields)
        load_multitask(model_dir) if expected == MULTITASK_MODEL_FILE else load_fraud_baseline(model_dir)
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
    before the champion's cut-off minus ``maturity_days`` (from today's manifest). The other tasks'
    eval rows (day D's impressions and reviews, the fixed item holdout) are never in a champion
    trained on an earlier day, so their files are linked unchanged.
    """
    features_dir = Path(features_dir)
    manifest = json.loads((features_dir / "manifest.json").read_text())
    maturity_days = int(manifest.get("config", {}).get("maturity_days", FeatureConfig.maturity_days))
    champion_cutoff = datetime(
        champion_trained_ds.year, champion_trained_ds.month, champion_trained_ds.day
    ) + timedelta(days=1)
    safe_before = champion_cutoff - timedelta(days=maturity_days)
    # A champion of day D itself (a re-run with another config) trained on exactly today's train split.
    same_day = champion_trained_ds >= date.fromisoformat(manifest["ds"])
    with tempfile.TemporaryDirectory(prefix="shopmtl_same_rows_") as view:
        view_dir = Path(view)
        for path in features_dir.iterdir():
            if path.name != "orders.parquet" or same_day:
                (view_dir / path.name).symlink_to(path.resolve())
        if (features_dir / "orders.parquet").exists() and not same_day:
            orders = pl.read_parquet(features_dir / "orders.parquet")
            seen = (pl.col("split") == "eval") & (pl.col("created_at") >= safe_before)
            log.info(
                "same-rows view: %d of %d fraud eval orders were young at the champion's cut-off and are left out",
                orders.filter(seen).height,
                orders.filter(pl.col("split") == "eval").height,
            )
            orders.filter(~seen).write_parquet(view_dir / "orders.parquet")
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
    log.info("champion %s %s on today's rows: %s", model_name, champion["model_version"], _format_rows(rows))
    return _tag(rows, champion["model_version"])


def gate_model(
    warehouse_url: str,
    ds: date,
    summary: Mapping[str, Any],
    features_dir: Path,
    config: RegistryConfig = RegistryConfig(),
) -> dict[str, Any]:
    """Evaluate champion and challenger on the same unseen rows, then ``register_model``; returns its dict.

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
    warehouse_url: str, ds: date, summary: Mapping[str, Any], features_dir: Path, config: RegistryConfig
) -> dict[str, Any]:
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
        _format_rows(champion_rows),
        summary["model_version"],
        _format_rows(challenger_rows),
    )
    return register_model(
        warehouse_url, ds, summary, champion_rows, config, challenger_metrics_same_rows=challenger_rows
    )


def _format_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    return " ".join(f"{r['task']}.{r['metric']}={r['value']:.4f}" for r in rows if _usable(r["value"]))


def choose_scoring_model(decision: Mapping[str, Any], challenger_dir: str) -> str:
    """The artifact directory whose predictions are published: the challenger's if promoted, else the champion's."""
    if decision["status"] == "champion":
        return str(challenger_dir)
    champion_dir = decision.get("champion_artifact_path")
    if not champion_dir:
        raise ValueError(f"{decision['model_version']} is {decision['status']} but no champion is registered")
    return str(champion_dir)


def score_with_model(model_dir: Path, features_dir: Path, output_dir: Path) -> TrainingSummary:
    """Score ``features_dir`` with a saved model; write predictions like its trainer does; return a summary.

    Network (``model.pt``): every prediction file ``train_multitask`` writes (impressions_eval,
    candidates, orders, reviews, items), for the tasks the saved model was trained on, through the
    same ``predict_features``. LightGBM (``model.txt``): predictions/orders.parquet. The summary's
    metrics are the day's evaluation, so it can stand in for a training summary in ``publish_scores``.
    """
    model_dir, features_dir, output_dir = Path(model_dir), Path(features_dir), Path(output_dir)
    if output_dir.resolve() == model_dir.resolve():
        raise ValueError(f"score into a new directory, not over the model's own artifacts in {model_dir}")
    kind = _model_file(model_dir)
    if kind is None:
        raise FileNotFoundError(
            f"{model_dir} holds neither {MULTITASK_MODEL_FILE} nor {LGBM_MODEL_FILE} with {CONFIG_FILE}"
        )
    if kind == LGBM_MODEL_FILE:
        model = load_fraud_baseline(model_dir)
        orders = pl.read_parquet(features_dir / "orders.parquet")
        orders_scored = orders.filter(pl.col("split").is_in(["eval", "score"]))
        (output_dir / "predictions").mkdir(parents=True, exist_ok=True)
        orders_scored.select("order_id", "split").with_columns(
            pl.Series("p_fraud", predict_fraud(model, orders_scored), dtype=pl.Float64)
        ).write_parquet(output_dir / "predictions" / "orders.parquet")
        summary = TrainingSummary(LGBM_MODEL_NAME, model.model_version, output_dir, fraud_eval_metrics(model, orders))
    else:
        from training.train_multitask import score_multitask  # heavy: imported only when needed

        summary = score_multitask(model_dir, features_dir, output_dir)
    write_json(output_dir / "metrics.json", {**summary.to_dict(), "scored_with": str(model_dir)})
    log.info(
        "scored %s with %s %s: %s",
        features_dir,
        summary.model_name,
        summary.model_version,
        _format_rows(summary.metrics),
    )
    return summary


def select_scoring_model(
    warehouse_url: str,
    ds: date,
    summary: Mapping[str, Any],
    features_dir: Path,
    champion_output_dir: Path,
    config: RegistryConfig = RegistryConfig(),
) -> dict[str, Any]:
    """Gate the night's model and say which model's predictions day ``ds`` publishes.

    - promoted (or first) model: its own predictions;
    - rejected by the gate: the champion keeps scoring, on today's features, into ``champion_output_dir``;
    - a backfill (the champion was trained on a later day): the night's own model scores, because a
      model trained on later data would put the future into an old day's scores; the registry still
      records it as not promoted, so the newer champion stays in place;
    - a re-run of a day whose model is already registered: that night's decision again, against that
      night's champion (so reprocessing a day reproduces its scores).

    Returns ``{"decision": register_model's dict, "trained": the night's summary, "scoring": a
    TrainingSummary dict of the model whose predictions are published}``.
    """
    decision = gate_model(warehouse_url, ds, summary, features_dir, config)
    # The champion the decision was made against, read under the registry lock (a champion read
    # before the gate may be stale when nights run concurrently, e.g. a backfill); for a re-run of the
    # day (retry, reprocessed backfill) that night's champion, so the day's scores come out the same
    # whatever was promoted since.
    champion_trained_ds = decision["champion_trained_ds"]
    is_backfill = champion_trained_ds is not None and ds < date.fromisoformat(champion_trained_ds)
    if decision["status"] != "rejected" or is_backfill:
        scoring = dict(summary)
    else:
        champion_dir = choose_scoring_model(decision, str(summary["output_dir"]))
        scoring = score_with_model(Path(champion_dir), features_dir, champion_output_dir).to_dict()
    log.info(
        "%s %s is %s; day %s publishes the predictions of %s",
        summary["model_name"], summary["model_version"], decision["status"], ds, scoring["model_version"],
    )
    return {"decision": decision, "trained": dict(summary), "scoring": scoring}


def read_champion_dir(warehouse_url: str, model_name: str) -> Path | None:
    """The champion's artifact directory for a warm start, or None (first run, or its files are gone)."""
    champion = read_usable_champion(warehouse_url, model_name)
    return Path(champion["artifact_path"]) if champion else None
