"""A night becomes effective in one transaction: day D's scores, its model_runs rows and the gate's
registry decisions are written together (``etl.publish.publish_scores`` with the decisions recorded
before its commit), so a run that fails anywhere before, or while, publishing leaves the score
tables and ``model_registry`` as they were.

The gate decides against the champions it evaluated. When a concurrent night changed a champion
between this night's gate and its publish, the decision is stale: the gate runs again against the
new champion (``select_scoring_model``: its evidence, its choice of whose predictions publish) and
the day is published with the new decisions, up to ``GATE_ATTEMPTS`` times.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from etl.publish import publish_scores
from training.config import GateConfig
from training.gate import GATE_ATTEMPTS, GateResult, select_scoring_model
from training.registry import ChampionChangedError, ensure_registry, record_registration

log = logging.getLogger(__name__)


def publish_night(
    warehouse_url: str,
    ds: date,
    run_id: str,
    objectives: list[str],
    features_dir: Path,
    gates: Sequence[GateResult],
    champion_dirs: Mapping[str, Path],
    config: GateConfig = GateConfig(),
) -> dict[str, Any]:
    """Publish day ``ds`` and record the gates' decisions in one transaction; returns the publish
    summary with the gate results that took effect (``gates``, as ``GateResult.to_dict()``).

    ``champion_dirs``: per model name, where a champion is scored when a stale decision is made again.
    """
    ensure_registry(warehouse_url)
    gates = list(gates)
    for attempt in range(1, GATE_ATTEMPTS + 1):

        def record(conn: Connection) -> None:
            for gate in gates:
                record_registration(conn, gate.decision)

        try:
            summary = publish_scores(
                warehouse_url,
                ds,
                run_id,
                objectives,
                features_dir,
                scoring={gate.model_name: gate.scoring_dicts() for gate in gates},
                evaluations=[gate.trained.to_dict() for gate in gates],
                before_commit=record,
            )
        except ChampionChangedError as error:
            if attempt == GATE_ATTEMPTS:
                raise
            log.info("%s (attempt %d of %d): deciding again against the new champion", error, attempt, GATE_ATTEMPTS)
            gates = [
                select_scoring_model(warehouse_url, ds, gate.trained, features_dir, champion_dirs[gate.model_name], config)
                for gate in gates
            ]
            continue
        return {**summary.to_dict(), "gates": [gate.to_dict() for gate in gates]}
    raise AssertionError("unreachable")
