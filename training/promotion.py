"""The promotion rule: when a night's model may replace the champion (pure functions, no I/O).

A challenger is promoted unless some objective's day-D metric is worse than the champion's ON THE
SAME ROWS by more than ``GateConfig.tolerance``. A model trained on an earlier day than the champion
is never promoted (a backfill of an old day must not displace a newer model); the first model of a
name is. ``training/registry.py`` applies the rule inside its registration transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from training.config import GateConfig
from training.evaluation import is_usable

log = logging.getLogger(__name__)

# Comparisons treat differences this small as equal, so 0.80 vs 0.79 with tolerance 0.01 is "within".
FLOAT_SLACK = 1e-12


@dataclass(frozen=True)
class Decision:
    """The gate's verdict: promote or not, and why (task, metric, both values, tolerance)."""

    promote: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


def index_metrics(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """Metric rows keyed by (task, metric); a key given twice is an error (which one would count?)."""
    indexed: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in rows:
        key = (str(row["task"]), str(row["metric"]))
        if key in indexed:
            raise ValueError(f"metric rows hold {key[0]}.{key[1]} twice")
        indexed[key] = row
    return indexed


def decide_promotion(
    challenger_metrics: list[dict[str, Any]],
    champion_metrics: list[dict[str, Any]] | None,
    config: GateConfig = GateConfig(),
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
        if not (is_usable(new) and is_usable(old)):
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


def decide_against_champion(
    ds: date,
    metrics: list[dict[str, Any]],
    champion: dict[str, Any] | None,
    champion_metrics: list[dict[str, Any]] | None,
    config: GateConfig,
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
