"""The promotion rule: per objective, whether a night's model replaces that objective's champion
(pure functions, no I/O).

For each objective the gate has ``Evidence`` (``training/comparison.py``): challenger minus champion
on the objective's main metric, on the same rows, with a confidence interval. The rule, in order:

1. no champion serves the objective yet: the challenger does (the first model);
2. the challenger was trained on an earlier day than the champion: it never replaces it (a backfill
   of an old day must not displace a newer model);
3. the champion could not be evaluated (artifacts missing or unloadable): the challenger serves;
4. too few positives or negatives (``GateConfig.min_positives``; rows for the category,
   ``min_rows``): **not enough evidence**, the safer choice is kept: the champion, unless it is older
   than ``max_champion_age_days``, when its data is the bigger risk and the challenger serves;
5. otherwise the challenger is **rejected** only when the whole interval lies below ``-tolerance``
   (worse by more than the tolerance, with the interval's confidence), and serves otherwise.

Objectives of one batch kind (``etl.contract.OBJECTIVE_KIND``) are decided together
(``decide_units``): click and purchase (p_purchase = p_click * p_cvr) serve from one model, so
either being rejected keeps both with the champion. ``training/registry.py`` applies the rule inside its registration transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Any

from etl.contract import OBJECTIVE_KIND
from training.comparison import Evidence
from training.config import GateConfig


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on one objective: promote or not, and why (the evidence in words)."""

    objective: str
    promote: bool
    reasons: list[str] = field(default_factory=list)
    evidence: dict[str, Any] | None = None  # Evidence.to_dict(), when there was a comparison

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


def enough_evidence(evidence: Evidence, config: GateConfig) -> str | None:
    """None when the interval can be trusted, else why not."""
    if evidence.difference is None:
        return f"{evidence.describe()}: no interval"
    if evidence.n_positives is None:  # the category
        if evidence.n_rows < config.min_rows:
            return f"{evidence.n_rows} rows < min_rows {config.min_rows}"
        return None
    negatives = evidence.n_rows - evidence.n_positives
    if min(evidence.n_positives, negatives) < config.min_positives:
        return f"{evidence.n_positives} positives and {negatives} negatives; min_positives is {config.min_positives}"
    return None


def decide_objective(
    objective: str,
    ds: date,
    evidence: Evidence | None,
    champion: Mapping[str, Any] | None,
    config: GateConfig = GateConfig(),
) -> Decision:
    """The rule of the module docstring for one objective. ``champion``: {model_version, trained_ds
    (a date)} of the objective's champion, or None; ``evidence`` None: the champion was not evaluated."""
    if champion is None:
        return Decision(objective, True, [f"{objective}: no champion yet, the first model serves it"])
    version, trained_ds = champion["model_version"], champion["trained_ds"]
    if ds < trained_ds:
        return Decision(
            objective, False,
            [f"{objective}: trained on {ds}, before champion {version} (trained on {trained_ds}): "
             "a backfill never replaces a newer champion"],
        )  # fmt: skip
    if evidence is None:
        return Decision(
            objective, True,
            [f"{objective}: champion {version} could not be evaluated on today's rows (artifacts missing or "
             "unloadable): promoted without comparison"],
        )  # fmt: skip
    shown = evidence.to_dict()
    lacking = enough_evidence(evidence, config)
    if lacking is not None:
        age = (ds - trained_ds).days
        if age > config.max_champion_age_days:
            return Decision(
                objective, True,
                [f"{objective}: not enough evidence ({lacking}); champion {version} is {age} days old "
                 f"(> max_champion_age_days {config.max_champion_age_days}): the newer model serves. {evidence.describe()}"],
                shown,
            )  # fmt: skip
        return Decision(
            objective, False,
            [f"{objective}: not enough evidence ({lacking}); champion {version} ({age} days old) keeps serving. "
             f"{evidence.describe()}"],
            shown,
        )  # fmt: skip
    assert evidence.high is not None  # enough evidence means an interval
    if evidence.high < -config.tolerance:
        return Decision(
            objective, False,
            [f"{objective}: worse than champion {version} beyond the tolerance {config.tolerance}: {evidence.describe()}"],
            shown,
        )  # fmt: skip
    return Decision(
        objective, True,
        [f"{objective}: not worse than champion {version} by more than {config.tolerance}: {evidence.describe()}"],
        shown,
    )  # fmt: skip


def decide_units(decisions: Mapping[str, Decision]) -> dict[str, Decision]:
    """Objectives of one batch kind promote together: a kind with a rejected objective keeps all of
    its objectives with their champions (the reason says why)."""
    decided = dict(decisions)
    for kind in dict.fromkeys(OBJECTIVE_KIND.values()):
        present = [objective for objective in decided if OBJECTIVE_KIND[objective] == kind]
        held = [objective for objective in present if not decided[objective].promote]
        if not held or len(held) == len(present):
            continue
        for objective in present:
            if decided[objective].promote:
                note = f"{objective}: kept with the champion because {', '.join(held)} was not promoted and {' and '.join(present)} are served by one model"
                decided[objective] = replace(decided[objective], promote=False, reasons=[note, *decided[objective].reasons])
    return decided
