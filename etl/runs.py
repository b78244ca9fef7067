"""Which day a run processes, and where its files go (its ``etl.layout.RunLayout``)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from etl.config import Settings, load_settings
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


def plan_run(
    logical_date: datetime | None,
    data_interval_start: datetime | None,
    ds_override: str | None,
    window_days: int,
    settings: Settings | None = None,
) -> RunPlan:
    """The RunPlan of a run: its directory keyed by day D under ``SHOPMTL_HOME/runs``, and the
    deployment's configured sources (``SHOPMTL_SOURCES``)."""
    ds = choose_day(logical_date, data_interval_start, ds_override)
    settings = settings or load_settings()
    plan = RunPlan(ds=ds, window_days=window_days, run_dir=settings.run_dir(ds), sources=settings.sources)
    skipped = [objective for objective in OBJECTIVES if objective not in plan.objectives]
    if skipped:
        log.warning("Sources %s allow objectives %s; skipping %s", list(plan.sources), plan.objectives, skipped)
    return plan
