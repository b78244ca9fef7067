"""The ``model_registry`` table: every model version, its status and the decision that set it.

Statuses: ``champion`` (one per model name: it scores the day), ``challenger`` (a former champion,
kept as history) and ``rejected`` (lost the gate; the reasons are recorded). Registration is one
transaction under a table lock, so two nights running concurrently cannot both promote; the
promotion rule itself is ``training/promotion.py``, the evaluation that feeds it ``training/gate.py``.
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

from etl.warehouse import bind_date, bind_timestamp, create_tables, create_warehouse_engine, mask_url, read_frame
from training.config import GateConfig
from training.promotion import decide_against_champion

log = logging.getLogger(__name__)

TABLE = "model_registry"
_NOT_GIVEN = object()  # register_model's champion_seen when the caller does not say


class ChampionChangedError(RuntimeError):
    """The champion changed between its evaluation on today's rows and the registration (evaluate again)."""


@dataclass(frozen=True)
class Registration:
    """What ``register_model`` decided for one model version (small and JSON-able, fit for an XCom)."""

    model_name: str
    model_version: str
    status: str  # champion, challenger or rejected
    champion_version: str | None  # the champion after the decision (a rejected model: the one it lost to)
    champion_artifact_path: str | None
    champion_trained_ds: str | None  # ISO date
    reasons: list[str] = field(default_factory=list)
    # True when this version was registered before (a re-run): champion_* then say what they said
    # that night (the model itself if promoted, the champion it lost to if rejected), not today's.
    recorded: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Registration:
        return cls(**{key: values[key] for key in cls.__dataclass_fields__ if key in values})


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


def register_model(
    warehouse_url: str,
    ds: date,
    summary: Mapping[str, Any],
    champion_metrics_same_rows: list[dict[str, Any]] | None,
    config: GateConfig = GateConfig(),
    challenger_metrics_same_rows: list[dict[str, Any]] | None = None,
    champion_seen: str | None | object = _NOT_GIVEN,
) -> Registration:
    """Record a trained model, apply the gate, and promote it or reject it, in one transaction.

    ``summary`` is ``TrainingSummary.to_dict()``; ``champion_metrics_same_rows`` the current
    champion's metrics on the same evaluation rows (``evaluate_champion``), None when there is no
    champion or it cannot be evaluated. The gate compares them with ``challenger_metrics_same_rows``
    when given (``gate_model``), else with the summary's metrics. Registering a version that is
    already registered changes nothing and returns its recorded decision (re-running a day).
    ``champion_seen`` (``gate_model``): the champion version, or None, the caller saw when it found
    nothing to evaluate; another champion by now (a concurrent night promoted one) is a
    ``ChampionChangedError``, not a promotion without comparison.
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
                return _registration(model_name, model_version, existing["status"], judged_against, reasons, recorded=True)

            _check_champion_unchanged(champion, champion_metrics_same_rows)
            if champion_seen is not _NOT_GIVEN and (champion["model_version"] if champion else None) != champion_seen:
                raise ChampionChangedError(
                    f"no champion was evaluated ({champion_seen} seen) but the champion is now "
                    f"{champion['model_version'] if champion else None}: evaluate again"
                )
            compared_metrics = metrics if challenger_metrics_same_rows is None else challenger_metrics_same_rows
            decision = decide_against_champion(ds, compared_metrics, champion, champion_metrics_same_rows, config)
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

    result = _registration(model_name, model_version, params["status"], new_champion, decision.reasons)
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


def _registration(
    model_name: str,
    model_version: str,
    status: str,
    champion: dict[str, Any] | None,
    reasons: list[str],
    recorded: bool = False,
) -> Registration:
    return Registration(
        model_name=model_name,
        model_version=model_version,
        status=status,
        champion_version=champion["model_version"] if champion else None,
        champion_artifact_path=champion["artifact_path"] if champion else None,
        champion_trained_ds=champion["trained_ds"].isoformat() if champion else None,
        reasons=reasons,
        recorded=recorded,
    )


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
