"""The ``model_registry`` table: every model version, per objective its status and the decision that set it.

Statuses, per (model version, objective): ``champion`` (one per model name and objective: it serves
that objective), ``challenger`` (served it before a newer champion) and ``rejected`` (not promoted for
it; the reasons and the evidence are recorded). A night's decisions are made by ``decide_registration``
(reads only: the gate) and written by ``record_registration`` inside the transaction that publishes
the night's scores (``training/publication.py``), so a run that fails before publishing leaves no
trace here. Recording takes a table lock and checks the champions are still the ones the decision
was made against, so two nights running concurrently cannot both promote; the promotion rule itself
is ``training/promotion.py``, the evaluation that feeds it ``training/gate.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.artifacts import load_artifact_store
from etl.contract import OBJECTIVES
from etl.warehouse import (
    bind_date,
    bind_timestamp,
    check_table_columns,
    create_tables,
    create_warehouse_engine,
    mask_url,
    read_frame,
)
from training.comparison import Evidence
from training.config import GateConfig
from training.promotion import decide_objective, decide_units

log = logging.getLogger(__name__)

TABLE = "model_registry"


class ChampionChangedError(RuntimeError):
    """A champion changed between its evaluation on today's rows and the registration (evaluate again)."""


@dataclass(frozen=True)
class ObjectiveStatus:
    """What the registry says of one model version for one objective."""

    status: str  # champion, challenger or rejected
    champion_version: str | None  # the objective's champion after the decision (rejected: the one it lost to)
    champion_artifact_path: str | None
    champion_trained_ds: str | None  # ISO date
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Registration:
    """What ``decide_registration`` decided for one model version, per objective (small and JSON-able, fit
    for an XCom)."""

    model_name: str
    model_version: str
    objectives: dict[str, ObjectiveStatus]
    # True when this version was registered before (a re-run): the champion_* then say what they said
    # that night (the model itself if promoted, the champion it lost to if rejected), not today's.
    recorded: bool = False
    # What record_registration writes (empty when recorded): the day, the model's artifacts and metric
    # rows, per objective the decision (Decision.to_dict() with compared_with), and per objective the
    # champion version the decision was made against (None: none).
    ds: str | None = None
    artifact_path: str | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    champions_seen: dict[str, str | None] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``champion`` when promoted for every objective, ``rejected`` for none, else ``partial``."""
        statuses = {objective.status for objective in self.objectives.values()}
        if statuses <= {"champion"}:
            return "champion"
        return "rejected" if "champion" not in statuses else "partial"

    @property
    def reasons(self) -> list[str]:
        return [reason for objective in self.objectives.values() for reason in objective.reasons]

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per objective (the run report's table)."""
        return [
            {"model_name": self.model_name, "model_version": self.model_version, "objective": objective, **asdict(status)}
            for objective, status in self.objectives.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Registration:
        return cls(
            model_name=str(values["model_name"]),
            model_version=str(values["model_version"]),
            objectives={objective: ObjectiveStatus(**status) for objective, status in values["objectives"].items()},
            recorded=bool(values.get("recorded", False)),
            ds=values.get("ds"),
            artifact_path=values.get("artifact_path"),
            metrics=list(values.get("metrics", [])),
            decisions=dict(values.get("decisions", {})),
            champions_seen=dict(values.get("champions_seen", {})),
        )


def trained_objectives(metrics: Iterable[Mapping[str, Any]]) -> list[str]:
    """The objectives a model has metric rows for, in the canonical order."""
    tasks = {str(row["task"]) for row in metrics}
    return [objective for objective in OBJECTIVES if objective in tasks]


def _lock_registry(conn: Connection) -> None:
    """Serialise registrations, so two nightly runs cannot both read the old champion and both promote."""
    if conn.dialect.name == "postgresql":
        # Conflicts with itself and with writers, not with plain reads (analysts, read_champions).
        conn.execute(sa.text(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE"))
    # SQLite: the INSERT that follows takes the database's write lock before anything is read.


def _read_rows(conn: Connection, where: str, params: Mapping[str, Any]) -> pl.DataFrame:
    return read_frame(conn, f"SELECT * FROM {TABLE} WHERE {where}", params, table=TABLE)


def _champion_rows(conn: Connection, model_name: str) -> dict[str, dict[str, Any]]:
    """Objective -> its champion row."""
    rows = _read_rows(conn, "model_name = :name AND status = 'champion'", {"name": model_name})
    return {row["objective"]: row for row in rows.iter_rows(named=True)}


def _table_exists(conn: Connection) -> bool:
    return sa.inspect(conn).has_table(TABLE)


def _champion_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "model_version": row["model_version"],
        "artifact_path": row["artifact_path"],
        "trained_ds": row["trained_ds"].isoformat(),
        "metrics": json.loads(row["metrics_json"]),
    }


def read_champions(warehouse_url: str, model_name: str) -> dict[str, dict[str, Any]]:
    """Objective -> its champion {model_version, artifact_path, trained_ds (ISO), metrics}; empty when none."""
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            rows = _champion_rows(conn, model_name) if _table_exists(conn) else {}
    finally:
        engine.dispose()
    return {objective: _champion_dict(row) for objective, row in rows.items()}


def read_champion(warehouse_url: str, model_name: str) -> dict[str, Any] | None:
    """The champion of the model's first objective with one (canonical order: click first), or None:
    the model a warm start begins from."""
    champions = read_champions(warehouse_url, model_name)
    return next((champions[objective] for objective in OBJECTIVES if objective in champions), None)


def _version_rows(conn: Connection, model_name: str, model_version: str) -> dict[str, dict[str, Any]]:
    rows = _read_rows(conn, "model_name = :name AND model_version = :version", {"name": model_name, "version": model_version})
    return {row["objective"]: row for row in rows.iter_rows(named=True)}


def ensure_registry(warehouse_url: str) -> None:
    """Create ``model_registry`` when missing; name an older release's table instead of writing into it."""
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            exists = _table_exists(conn)
            if exists:
                check_table_columns(conn, "ops", TABLE)
        if not exists:  # DDL only once: concurrent CREATE TABLE IF NOT EXISTS can collide on PostgreSQL
            create_tables(engine, areas=["ops"])
    finally:
        engine.dispose()


def decide_registration(
    warehouse_url: str,
    ds: date,
    summary: Mapping[str, Any],
    evidence: Mapping[str, Evidence | None],
    champions_seen: Mapping[str, str | None],
    config: GateConfig = GateConfig(),
) -> Registration:
    """Decide per objective whether a trained model is promoted, writing nothing (``record_registration``
    writes it when the day publishes).

    ``summary`` is ``TrainingSummary.to_dict()``; its metric rows say which objectives it serves.
    ``evidence``: per objective, the paired comparison with that objective's champion on the same rows
    (None: the champion could not be evaluated). ``champions_seen``: per objective, the champion
    version the gate evaluated (None: none); another champion by now is a ``ChampionChangedError``,
    never a decision against a model nobody evaluated. A version that is already registered returns
    its recorded decisions (re-running a day).
    """
    model_name, model_version = str(summary["model_name"]), str(summary["model_version"])
    metrics = list(summary["metrics"])  # type: ignore[arg-type]
    objectives = trained_objectives(metrics)
    if not objectives:
        raise ValueError(f"{model_name} {model_version} has no metric rows: nothing to register")
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            exists = _table_exists(conn)
            if exists:  # an older release's registry is named, not read as if it were this one
                check_table_columns(conn, "ops", TABLE)
                if _version_rows(conn, model_name, model_version):
                    return _recorded(conn, model_name, model_version)
            champions = _champion_rows(conn, model_name) if exists else {}
    finally:
        engine.dispose()
    check_champions(champions, champions_seen, objectives)
    decisions = decide_units(
        {
            objective: decide_objective(
                objective,
                ds,
                evidence.get(objective),
                None if objective not in champions else {
                    "model_version": champions[objective]["model_version"],
                    "trained_ds": champions[objective]["trained_ds"],
                },
                config,
            )
            for objective in objectives
        }
    )  # fmt: skip
    # Recorded as the store's URL where artifacts are shared (etl.artifacts), so any worker finds it.
    artifact_path = load_artifact_store().location(summary["output_dir"])
    itself = {"model_version": model_version, "artifact_path": artifact_path, "trained_ds": ds}
    statuses = {
        objective: _status(
            "champion" if decision.promote else "rejected",
            itself if decision.promote else champions.get(objective),
            decision.reasons,
        )
        for objective, decision in decisions.items()
    }
    registration = Registration(
        model_name,
        model_version,
        statuses,
        ds=ds.isoformat(),
        artifact_path=artifact_path,
        metrics=metrics,
        decisions={
            objective: {
                **decision.to_dict(),
                "compared_with": champions[objective]["model_version"] if objective in champions else None,
            }
            for objective, decision in decisions.items()
        },
        champions_seen={objective: champions_seen.get(objective) for objective in objectives},
    )
    promoted = [objective for objective, decision in decisions.items() if decision.promote]
    held = [objective for objective in objectives if objective not in promoted]
    log.info(
        "%s %s in %s: would serve %s (effective when the day publishes); champions keep %s. %s",
        model_name,
        model_version,
        mask_url(warehouse_url),
        promoted or "nothing",
        held or "nothing",
        " | ".join(registration.reasons),
    )
    return registration


def check_champions(
    champions: Mapping[str, Mapping[str, Any]], champions_seen: Mapping[str, str | None], objectives: Iterable[str]
) -> None:
    """Raise ``ChampionChangedError`` when an objective's champion is not the one a decision was made against."""
    for objective in objectives:
        current = champions[objective]["model_version"] if objective in champions else None
        if current != champions_seen.get(objective):
            raise ChampionChangedError(
                f"{objective}: champion {champions_seen.get(objective)} was evaluated but the champion is now "
                f"{current}: evaluate again"
            )


def record_registration(conn: Connection, registration: Registration) -> None:
    """Write a decided registration in the caller's transaction (the one publishing the day): the
    model's rows, and for each promoted objective the old champion demoted. A registration that is
    already recorded (a re-run, or a concurrent run of the same version) changes nothing; champions
    other than the ones decided against raise ``ChampionChangedError`` (nothing is written then, as
    the caller's transaction rolls back)."""
    if registration.recorded:
        return
    if registration.ds is None:
        raise ValueError(f"{registration.model_name} {registration.model_version}: not a decided registration")
    _lock_registry(conn)
    model_name, model_version = registration.model_name, registration.model_version
    objectives = list(registration.decisions)
    # The rows go in first as placeholder 'challenger's (invisible until commit): the insert takes
    # SQLite's write lock, and its conflict tells a version already recorded apart from a new one.
    inserted = sum(
        conn.execute(
            sa.text(
                f"INSERT INTO {TABLE} (model_name, model_version, objective, trained_ds, artifact_path, status, "
                "metrics_json, created_at) VALUES (:name, :version, :objective, :ds, :path, 'challenger', :metrics, :now) "
                "ON CONFLICT (model_name, model_version, objective) DO NOTHING"
            ),
            {
                "name": model_name,
                "version": model_version,
                "objective": objective,
                "ds": bind_date(conn, date.fromisoformat(registration.ds)),
                "path": registration.artifact_path,
                "metrics": json.dumps([row for row in registration.metrics if row["task"] == objective], sort_keys=True),
                "now": bind_timestamp(conn, datetime.now(UTC)),
            },
        ).rowcount
        for objective in objectives
    )
    if inserted < len(objectives):
        log.info("%s %s was recorded by another run: nothing changed", model_name, model_version)
        return
    check_champions(_champion_rows(conn, model_name), registration.champions_seen, objectives)
    for objective, decision in registration.decisions.items():
        params = {
            "name": model_name,
            "version": model_version,
            "objective": objective,
            "status": "champion" if decision["promote"] else "rejected",
            "reasons": json.dumps(decision["reasons"]),
            "compared_with": decision["compared_with"],
            "evidence": None if decision["evidence"] is None else json.dumps(decision["evidence"], sort_keys=True),
            "compared": _compared_metrics(decision["evidence"]),
        }
        if decision["promote"]:
            # Demote first: the partial unique index allows one champion per objective at any moment.
            conn.execute(
                sa.text(
                    f"UPDATE {TABLE} SET status = 'challenger' WHERE model_name = :name AND objective = :objective "
                    "AND status = 'champion' AND model_version <> :version"
                ),
                params,
            )
        conn.execute(
            sa.text(
                f"UPDATE {TABLE} SET status = :status, reasons_json = :reasons, compared_with = :compared_with, "
                "evidence_json = :evidence, compared_metrics_json = :compared "
                "WHERE model_name = :name AND model_version = :version AND objective = :objective"
            ),
            params,
        )


def register_model(
    warehouse_url: str,
    ds: date,
    summary: Mapping[str, Any],
    evidence: Mapping[str, Evidence | None],
    champions_seen: Mapping[str, str | None],
    config: GateConfig = GateConfig(),
) -> Registration:
    """``decide_registration`` and ``record_registration`` at once, in a transaction of its own (the
    nightly run records with its scores instead: ``training/publication.py``)."""
    ensure_registry(warehouse_url)
    registration = decide_registration(warehouse_url, ds, summary, evidence, champions_seen, config)
    commit_registrations(warehouse_url, [registration])
    return registration


def commit_registrations(warehouse_url: str, registrations: Iterable[Registration]) -> None:
    """``record_registration`` of each, in one transaction of their own (without publishing scores:
    tools that replay the gate night after night, such as ``bench.gate_noise``, and tests)."""
    ensure_registry(warehouse_url)
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.begin() as conn:
            for registration in registrations:
                record_registration(conn, registration)
    finally:
        engine.dispose()


def _compared_metrics(evidence: Mapping[str, Any] | None) -> str | None:
    """Both models' main metric on the same rows, as metric rows {task, metric, value, n_rows} (the
    report's "champion on the same rows" line)."""
    if evidence is None or evidence.get("difference") is None:
        return None
    row = lambda value: [{"task": evidence["objective"], "metric": evidence["metric"], "value": value, "n_rows": evidence["n_rows"]}]  # noqa: E731
    return json.dumps({"champion": row(evidence["champion"]), "challenger": row(evidence["challenger"])}, sort_keys=True)


def _recorded(conn: Connection, model_name: str, model_version: str) -> Registration:
    """The decisions recorded for a registered version, as that night made them."""
    rows = _version_rows(conn, model_name, model_version)
    objectives: dict[str, ObjectiveStatus] = {}
    for objective in (objective for objective in OBJECTIVES if objective in rows):
        row = rows[objective]
        # As that night said: a promoted model named itself, a rejected one the champion it lost to.
        if row["status"] != "rejected":
            judged_against = row
        elif row["compared_with"]:
            judged_against = _version_rows(conn, model_name, row["compared_with"]).get(objective)
        else:
            judged_against = None
        objectives[objective] = _status(row["status"], judged_against, json.loads(row["reasons_json"] or "[]"))
    log.info(
        "%s %s is already registered (%s): nothing changed",
        model_name, model_version, ", ".join(f"{objective} {status.status}" for objective, status in objectives.items()),
    )  # fmt: skip
    return Registration(model_name, model_version, objectives, recorded=True)


def _status(status: str, champion: Mapping[str, Any] | None, reasons: list[str]) -> ObjectiveStatus:
    return ObjectiveStatus(
        status=status,
        champion_version=champion["model_version"] if champion else None,
        champion_artifact_path=champion["artifact_path"] if champion else None,
        champion_trained_ds=champion["trained_ds"].isoformat() if champion else None,
        reasons=reasons,
    )
