"""Which day a run processes, and where its files go (its ``etl.layout.RunLayout``)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from etl.config import FeatureConfig, Settings, load_settings
from etl.contract import OBJECTIVES, SOURCE_TABLES, available_objectives
from etl.extract import ExtractWindow
from etl.layout import RunLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPlan:
    """Day D, its training window and its run directory; passed between tasks as a small dict."""

    ds: date
    window_days: int
    run_dir: Path
    sources: tuple[str, ...] = SOURCE_TABLES

    @property
    def objectives(self) -> list[str]:
        """The objectives this deployment's sources allow."""
        return available_objectives(self.sources)

    @property
    def window(self) -> ExtractWindow:
        return ExtractWindow(ds=self.ds, window_days=self.window_days)

    @property
    def layout(self) -> RunLayout:
        """The directories of this run (extract, data docs, features, models, report)."""
        return RunLayout(self.run_dir)

    def to_dict(self) -> dict[str, object]:
        return {
            "ds": self.ds.isoformat(),
            "window_days": self.window_days,
            "run_dir": str(self.run_dir),
            "window_start": self.window.window_start.isoformat(),
            "window_end": self.window.window_end.isoformat(),
            "sources": list(self.sources),
            "objectives": self.objectives,
        }

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> RunPlan:
        """The plan of ``to_dict``; the window and the objectives follow from the other keys."""
        return cls(
            ds=date.fromisoformat(str(values["ds"])),
            window_days=int(values["window_days"]),  # type: ignore[arg-type]
            run_dir=Path(str(values["run_dir"])),
            sources=tuple(values.get("sources", SOURCE_TABLES)),  # type: ignore[arg-type]
        )


def choose_day(logical_date: datetime | None, data_interval_start: datetime | None, ds_override: str | None) -> date:
    """Day D of a run: the ``ds`` Param when given, else the logical date's day.

    With the daily data-interval timetable a scheduled or backfill run for D has logical date D and
    interval [D, D + 1 day), launched just after D ends. ``airflow dags test nightly_retrain D`` and
    UI triggers also carry logical date D (their inferred interval is the day before, so the interval
    is not used for them). The interval start is used only when a caller passes one without a logical
    date: Airflow 3 gives a run triggered without a logical date no data interval at all, so such a
    run needs the ``ds`` Param (tests/unit/test_runs.py walks through every case).
    """
    if ds_override:
        return date.fromisoformat(ds_override)
    instant = logical_date or data_interval_start
    if instant is None:
        raise ValueError("The run has neither a logical date nor a data interval: pass the 'ds' Param")
    return instant.date()


class RunParamsError(ValueError):
    """Params that are each within bounds but together leave a night nothing to do (Airflow checks each
    Param alone; their combination is checked here, by the first task, before anything is read)."""


def check_window(window_days: int, features: FeatureConfig, objectives: list[str]) -> None:
    """Refuse a window too short for the labels its objectives need: fraud trains on orders older
    than ``maturity_days + fraud_eval_days``, and impressions need ``label_days`` to get their labels."""
    if "fraud" in objectives and window_days <= features.maturity_days + features.fraud_eval_days:
        raise RunParamsError(
            f"window_days={window_days} leaves no fraud training orders: it must exceed maturity_days "
            f"({features.maturity_days}) + fraud_eval_days ({features.fraud_eval_days}) = "
            f"{features.maturity_days + features.fraud_eval_days}"
        )
    if window_days <= features.label_days:
        raise RunParamsError(f"window_days={window_days} must exceed the {features.label_days} day(s) impressions need for their labels")


def check_day(ds: date, now: datetime) -> None:
    """Refuse a day that has not begun (a ``ds`` Param in the future): nothing can have landed for
    it, and waiting for its data would hold the run for days."""
    if datetime(ds.year, ds.month, ds.day, tzinfo=UTC) > now:
        raise RunParamsError(f"day {ds} has not begun yet (it is {now:%Y-%m-%d %H:%M} UTC): pick a day that has data")


def plan_run(
    logical_date: datetime | None,
    data_interval_start: datetime | None,
    ds_override: str | None,
    window_days: int,
    settings: Settings | None = None,
    features: FeatureConfig | None = None,
    now: datetime | None = None,
) -> RunPlan:
    """The RunPlan of a run: its directory keyed by day D under ``SHOPMTL_HOME/runs``, and the
    deployment's configured sources (``SHOPMTL_SOURCES``). ``RunParamsError`` when D has not begun
    (``now``: aware; default now) or ``window_days`` is too short for ``features``' label settings."""
    ds = choose_day(logical_date, data_interval_start, ds_override)
    check_day(ds, now or datetime.now(UTC))
    settings = settings or load_settings()
    plan = RunPlan(ds=ds, window_days=window_days, run_dir=settings.run_dir(ds), sources=settings.sources)
    check_window(window_days, features or FeatureConfig(), plan.objectives)
    skipped = [objective for objective in OBJECTIVES if objective not in plan.objectives]
    if skipped:
        log.warning("Sources %s allow objectives %s; skipping %s", list(plan.sources), plan.objectives, skipped)
    return plan
