"""Day D of every way a nightly_retrain run starts, and the RunPlan that follows (etl/runs.py).

The logical dates and data intervals come from Airflow itself, not from hand-written dates: the DAG
is parsed from dags/nightly_retrain.py and turned into the scheduler's view of it (as ``dag.test()``
does), then asked what the scheduler, a backfill, ``airflow dags test`` and the UI's trigger give a
run. No DAG runs and no metadata database: only the date arithmetic of Airflow 3.3.

What a task sees (airflow/sdk/execution_time/task_runner.py): ``logical_date`` and
``data_interval_start`` are in the context only when the run has a logical date; a run without one
(Airflow 3 allows it for manual triggers) has no data interval either, so the ``plan`` task gets
None for both.
"""
from __future__ import annotations

import json
import logging
from datetime import date, datetime
from pathlib import Path

import pendulum
import pytest

from etl.contract import DAG_ID, OBJECTIVES, SOURCE_TABLES
from etl.layout import RunLayout
from etl.runs import RunPlan, choose_day, plan_run

REPO_DIR = Path(__file__).resolve().parents[2]
DAG_FILE = REPO_DIR / "dags" / "nightly_retrain.py"

D = date(2026, 3, 10)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> pendulum.DateTime:
    return pendulum.datetime(year, month, day, hour, minute, tz="UTC")


@pytest.fixture(scope="module")
def dag():
    """The DAG as the DAG processor parses it from its file."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


@pytest.fixture(scope="module")
def scheduler_dag(dag):
    """The scheduler's view of the DAG (the serialized DAG), built the way ``DAG.test()`` builds it."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))


def task_arguments(logical_date, data_interval) -> tuple[datetime | None, datetime | None]:
    """(logical_date, data_interval_start) as the ``plan`` task receives them from its context."""
    if logical_date is None:  # no logical date: the context has neither key, the task gets its defaults
        return None, None
    return logical_date, data_interval.start


def test_the_dag_schedules_daily_data_intervals_in_utc(dag, scheduler_dag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    for timetable in (dag.timetable, scheduler_dag.timetable):
        assert isinstance(timetable, CronDataIntervalTimetable)
        assert timetable.summary == "0 0 * * *"
    assert dag.params["ds"] is None  # no override unless someone sets the Param


def test_scheduled_run_processes_the_day_that_just_ended(scheduler_dag, monkeypatch):
    from airflow.timetables import interval
    from airflow.timetables.base import DagRunInfo

    # The scheduler asks just after midnight, the run for D - 1 being the last automated one. The DAG
    # has catchup=False, so the timetable looks at the clock: pin it.
    monkeypatch.setattr(interval, "utcnow", lambda: utc(2026, 3, 11, 0, 5))
    previous = DagRunInfo.interval(start=utc(2026, 3, 9), end=utc(2026, 3, 10))
    for last_run in (previous, None):  # None: the first run after the DAG is switched on
        info = scheduler_dag.next_dagrun_info(last_automated_run_info=last_run)
        assert info.data_interval.start == utc(2026, 3, 10) and info.data_interval.end == utc(2026, 3, 11)
        assert info.run_after == utc(2026, 3, 11)  # starts once D is over
        assert info.logical_date == utc(2026, 3, 10)
        assert choose_day(*task_arguments(info.logical_date, info.data_interval), None) == D


def test_backfill_runs_process_each_day_of_the_range(scheduler_dag):
    # `airflow backfill create --from-date 2026-03-01 --to-date 2026-03-05` lists its runs with
    # iter_dagrun_infos_between (airflow/models/backfill.py, _get_info_list).
    infos = list(scheduler_dag.iter_dagrun_infos_between(utc(2026, 3, 1), utc(2026, 3, 5)))
    days = [choose_day(*task_arguments(info.logical_date, info.data_interval), None) for info in infos]
    assert days == [date(2026, 3, day) for day in range(1, 6)]
    for info, day in zip(infos, days):
        assert info.data_interval.start.date() == day and (info.data_interval.end - info.data_interval.start).days == 1


def test_dags_test_processes_the_day_it_is_given(dag, scheduler_dag):
    from airflow.cli import cli_parser

    args = cli_parser.get_parser().parse_args(["dags", "test", DAG_ID, "2026-03-10"])
    # DAG.test(): data_interval = timetable.infer_manual_data_interval(run_after=logical_date)
    interval = scheduler_dag.timetable.infer_manual_data_interval(run_after=args.logical_date)
    assert args.logical_date == utc(2026, 3, 10)
    assert interval.start == utc(2026, 3, 9)  # the day before D: the interval must not decide the day
    assert choose_day(*task_arguments(args.logical_date, interval), dag.params["ds"]) == D


def _ui_trigger(scheduler_dag, logical_date, run_after=None) -> dict:
    """What the UI's trigger form (POST /api/v2/dags/{dag_id}/dagRuns) makes of a trigger."""
    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody

    body = TriggerDAGRunPostBody(logical_date=logical_date, run_after=run_after, conf={})
    return body.validate_context(scheduler_dag)


@pytest.mark.parametrize("logical_date", [utc(2026, 3, 10), utc(2026, 3, 10, 14, 30)])
def test_ui_trigger_with_a_logical_date_processes_that_day(scheduler_dag, logical_date):
    run = _ui_trigger(scheduler_dag, logical_date, run_after=utc(2026, 4, 1, 9))
    assert run["logical_date"] == logical_date
    assert run["data_interval"].start == utc(2026, 3, 9)  # inferred from the logical date: the day before
    assert choose_day(*task_arguments(run["logical_date"], run["data_interval"]), None) == D


def test_ui_trigger_without_a_logical_date_needs_the_ds_param(scheduler_dag):
    run = _ui_trigger(scheduler_dag, None, run_after=utc(2026, 3, 11, 9))
    assert run["logical_date"] is None and run["data_interval"] is None
    arguments = task_arguments(run["logical_date"], run["data_interval"])
    assert arguments == (None, None)
    assert choose_day(*arguments, "2026-03-10") == D
    with pytest.raises(ValueError, match="neither a logical date nor a data interval: pass the 'ds' Param"):
        choose_day(*arguments, None)


def test_the_ds_param_overrides_the_logical_date(scheduler_dag):
    run = _ui_trigger(scheduler_dag, utc(2026, 3, 20), run_after=utc(2026, 3, 21, 9))
    assert choose_day(*task_arguments(run["logical_date"], run["data_interval"]), "2026-03-10") == D
    assert choose_day(utc(2026, 3, 20), utc(2026, 3, 19), "") == date(2026, 3, 20)  # an empty Param is no override


def test_an_interval_start_alone_decides_the_day():
    # No Airflow run hands the task an interval without a logical date; a direct caller may.
    assert choose_day(None, utc(2026, 3, 10), None) == D


def test_plan_run_without_any_day_fails_before_touching_anything(shopmtl_home):
    with pytest.raises(ValueError, match="pass the 'ds' Param"):
        plan_run(None, None, None, 28)
    assert list(shopmtl_home.iterdir()) == []


def test_plan_of_a_scheduled_run_with_every_source(dag, shopmtl_home, monkeypatch, caplog):
    monkeypatch.delenv("SHOPMTL_SOURCES", raising=False)
    with caplog.at_level(logging.WARNING, logger="etl.runs"):
        plan = plan_run(utc(2026, 3, 10), utc(2026, 3, 10), dag.params["ds"], dag.params["window_days"])
    assert plan.ds == D and plan.window_days == 28
    assert plan.run_dir == shopmtl_home / "runs" / "2026-03-10"
    assert plan.sources == SOURCE_TABLES and plan.objectives == list(OBJECTIVES)
    assert not caplog.records  # nothing skipped
    assert plan.window.window_start == datetime(2026, 2, 11) and plan.window.window_end == datetime(2026, 3, 11)
    assert plan.layout == RunLayout(shopmtl_home / "runs" / "2026-03-10")
    assert plan.layout.extract_dir == plan.run_dir / "extract"
    assert plan.layout.features_dir == plan.run_dir / "features"
    assert plan.layout.data_docs_dir == plan.run_dir / "data_docs"
    assert plan.layout.model_dir("multitask") == plan.run_dir / "models" / "multitask"


def test_a_window_too_short_for_the_labels_is_refused_by_name(shopmtl_home, monkeypatch):
    from etl.config import FeatureConfig
    from etl.runs import RunParamsError

    with pytest.raises(RunParamsError, match=r"window_days=17 leaves no fraud training orders: it must exceed maturity_days \(14\) \+ fraud_eval_days \(3\) = 17"):
        plan_run(None, None, "2026-03-10", 17)
    assert plan_run(None, None, "2026-03-10", 18).window_days == 18
    assert plan_run(None, None, "2026-03-10", 10, features=FeatureConfig(maturity_days=5, fraud_eval_days=4)).window_days == 10
    with pytest.raises(RunParamsError, match="must exceed the 2 day"):
        plan_run(None, None, "2026-03-10", 2, features=FeatureConfig(maturity_days=0, fraud_eval_days=0))
    monkeypatch.setenv("SHOPMTL_SOURCES", "clicks,items")  # no fraud objective: its labels do not matter
    assert plan_run(None, None, "2026-03-10", 7).objectives == ["click"]


def test_a_day_that_has_not_begun_is_refused(shopmtl_home):
    from etl.runs import RunParamsError

    now = utc(2026, 3, 10)
    with pytest.raises(RunParamsError, match=r"day 2026-03-11 has not begun yet \(it is 2026-03-10 00:00 UTC\)"):
        plan_run(None, None, "2026-03-11", 28, now=now)
    assert plan_run(None, None, "2026-03-10", 28, now=now).ds == date(2026, 3, 10)  # today: begun (the sensor waits for it)


def test_plan_with_restricted_sources_keeps_only_the_objectives_they_allow(shopmtl_home, monkeypatch, caplog):
    monkeypatch.setenv("SHOPMTL_SOURCES", "reviews, item_images,items")
    with caplog.at_level(logging.WARNING, logger="etl.runs"):
        plan = plan_run(None, None, "2026-03-10", 14)
    assert plan.run_dir == shopmtl_home / "runs" / "2026-03-10"
    assert plan.sources == ("items", "item_images", "reviews")  # contract order
    assert plan.objectives == ["review", "category"]
    assert "skipping ['click', 'purchase', 'fraud']" in caplog.text


def test_plan_round_trips_through_its_xcom_dict(shopmtl_home, monkeypatch):
    monkeypatch.setenv("SHOPMTL_SOURCES", "clicks,items")
    plan = plan_run(utc(2026, 3, 10), utc(2026, 3, 9), None, 7)
    values = json.loads(json.dumps(plan.to_dict()))  # XCom stores JSON
    assert values == {
        "ds": "2026-03-10",
        "window_days": 7,
        "run_dir": str(shopmtl_home / "runs" / "2026-03-10"),
        "window_start": "2026-03-04T00:00:00",
        "window_end": "2026-03-11T00:00:00",
        "sources": ["items", "clicks"],
        "objectives": ["click"],
    }
    back = RunPlan.from_dict(values)
    assert back == plan
    assert back.objectives == plan.objectives and back.layout == plan.layout
