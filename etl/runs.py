"""Which day a run processes, and where its files go."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from etl.config import Settings, load_settings
from etl.contract import SOURCE_TABLES, TASKS as TASK_ORDER, available_tasks
from etl.extract import ExtractWindow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPlan:
    """Day D, its training window and its run directory; passed between tasks as a small dict."""

    ds: date
    window_days: int
    run_dir: Path
    sources: tuple[str, ...] = SOURCE_TABLES

    @property
    def tasks(self) -> list[str]:
        """The learning tasks this deployment's sources allow."""
        return available_tasks(self.sources)

    @property
    def window(self) -> ExtractWindow:
        return ExtractWindow(ds=self.ds, window_days=self.window_days)

    @property
    def extract_dir(self) -> Path:
        return self.run_dir / "extract"

    @property
    def features_dir(self) -> Path:
        return self.run_dir / "features"

    @property
    def data_docs_dir(self) -> Path:
        return self.run_dir / "data_docs"

    def model_dir(self, model_name: str) -> Path:
        return self.run_dir / "models" / model_name

    def to_dict(self) -> dict[str, object]:
        return {
            "ds": self.ds.isoformat(),
            "window_days": self.window_days,
            "run_dir": str(self.run_dir),
            "window_start": self.window.window_start.isoformat(),
            "window_end": self.window.window_end.isoformat(),
            "sources": list(self.sources),
            "tasks": self.tasks,
        }

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> RunPlan:
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
    is not used for them); a trigger without a logical date falls back to the interval start.
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
    skipped = [task for task in TASK_ORDER if task not in plan.tasks]
    if skipped:
        log.warning("Sources %s allow tasks %s; skipping %s", list(plan.sources), plan.tasks, skipped)
    return plan
