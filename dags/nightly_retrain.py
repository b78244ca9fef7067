"""### Nightly retrain: extract -> validate -> features -> train -> publish

For day **D** (the run's logical date; its data interval is D 00:00 to D+1 00:00 UTC, and the
scheduled run starts just after D ends):

0. **wait for data**: a sensor (reschedule mode) waits until day D's clicks, orders and reviews have
   rows in the warehouse, up to `wait_for_data_hours` after D ends (after the run starts, for a
   scheduled run created late); then it fails with "no data for D" (also written to
   `data_quality_results`). A backfill of an old day without data fails at once;
1. **extract** each warehouse source for the training window ending with D into Parquet
   (`$SHOPMTL_HOME/runs/D/extract/`); nothing at or after the interval end is read. Event sources
   (clicks, orders, order lines, reviews, fraud labels) are assembled from immutable daily partitions
   (`$SHOPMTL_HOME/partitions/`): a night reads day D and any missing day from the warehouse
   (`full_refresh` re-reads the whole window and the 28 days of history before it);
2. **validate** every extract with the Great Expectations suites in `validation/`; a failed
   critical expectation stops the run here, naming table, column, rule and sample values
   (results in `data_quality_results`, data docs in `runs/D/data_docs/`);
3. **build features** with Polars, point-in-time correct; the impressions of a day whose labels can no
   longer change (two days old by default) are kept and reused by later nights, so a night builds
   about three days of impressions (`full_refresh` rebuilds the window);
4. **train** the multi-task network (click, ESMM conversion, review sentiment, image category,
   fraud) and the LightGBM fraud baseline, then **gate** each, objective by objective, against that
   objective's champion on the same rows; where it is not promoted, the champion keeps serving the
   objective;
5. **publish** `score_user_item`, `score_order_fraud`, `score_review_sentiment`,
   `score_item_category` and `model_runs` for D, replacing D's rows, and record the gates' decisions
   in `model_registry`, all in one transaction: a run that fails before this leaves no trace. Each
   table is an Asset (`x-shopmtl://warehouse/<table>`) whose event carries the day and its rows,
   so a DAG scheduled on it runs once the day is published;
6. **report**: `runs/D/report.html` (metrics of the last nights, score distributions, calibration,
   data quality); the task log prints its path.

A deployment names the sources it has (`SHOPMTL_SOURCES`); the run trains and publishes the
objectives those sources allow and logs the ones it skips.

The warehouse is the Airflow connection `shopmtl_warehouse`; without it the embedded SQLite
warehouse under `$SHOPMTL_HOME` is used. With `SHOPMTL_ARTIFACTS_URL` (e.g. `s3://bucket/shopmtl`) the
files live in that store: each task pulls what it reads into its worker's `$SHOPMTL_HOME` and pushes
what it wrote once it succeeds, so the tasks of one run may execute on different hosts. Backfill days from the UI (or `airflow backfill create`);
the `ds` Param reprocesses one day from a manual trigger.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from etl.config import load_settings
from etl.contract import ASSET_GROUP, DAG_ID, FRAUD_LGBM, MULTITASK, PUBLISHED_TABLES, table_asset_uri

# Training may run on its own Celery queue (SHOPMTL_TRAINING_QUEUE=gpu for docker-compose's gpu worker);
# unset, it shares Airflow's default queue.
TRAINING_QUEUE = load_settings().training_queue
TRAINING_TASK_ARGS = {"queue": TRAINING_QUEUE} if TRAINING_QUEUE else {}
# The published tables as Assets: publish's outlets, for DAGs scheduled on them (README, "For analysts").
PUBLISHED_ASSETS = {table: Asset(name=table, uri=table_asset_uri(table), group=ASSET_GROUP) for table in PUBLISHED_TABLES}


@dag(
    dag_id=DAG_ID,
    # A data-interval timetable: the run for D covers [D, D+1) and starts once D is over. ("@daily"
    # would give zero-length intervals in Airflow 3.)
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    # Far in the past, so any day the warehouse holds can be processed (`airflow dags test` and
    # backfills of a day before start_date run no task and report success); catchup=False keeps an
    # unpaused DAG from creating a run per past day.
    start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    tags=["shopmtl", "etl", "ml"],
    default_args={"owner": "shopmtl", "retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "window_days": Param(28, type="integer", minimum=7, maximum=365, description="Training window length (days) ending with D"),
        "maturity_days": Param(14, type="integer", minimum=1, maximum=120, description="Unlabelled orders count as legitimate once this old"),
        "fraud_eval_days": Param(3, type="integer", minimum=1, maximum=30, description="Newest mature days held out to evaluate fraud models"),
        "seed": Param(7, type="integer", minimum=0, maximum=2**32 - 1, description="Seed for training (same data + seed = same scores)"),
        "warm_start": Param(False, type="boolean", description="Start the network from the champion's weights instead of from scratch"),
        "recent_days": Param(
            None, type=["null", "integer"], minimum=1, maximum=365,
            description="With warm_start: an incremental night, training on the newest days plus a replay sample of older rows (empty: the whole window)",
        ),
        "replay_fraction": Param(0.1, type="number", minimum=0, maximum=1, description="Share of the older training rows replayed on an incremental night"),
        "ds": Param(None, type=["null", "string"], format="date", description="Process this day instead of the logical date"),
        "wait_for_data_hours": Param(
            6, type="integer", minimum=0, maximum=72,
            description="Hours after day D ends to wait for D's data (clicks, orders, reviews) before failing with 'no data for D' (0: fail at once)",
        ),
        "full_refresh": Param(False, type="boolean", description="Re-extract every day of the window's event sources (and their 28 days of history) from the warehouse and rebuild every day's impression features, replacing the kept partitions"),
    },
    doc_md=__doc__,
)
def nightly_retrain():
    @task
    def plan(params=None, logical_date=None, data_interval_start=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from etl.config import FeatureConfig
        from etl.runs import RunParamsError, plan_run

        features = FeatureConfig(maturity_days=params["maturity_days"], fraud_eval_days=params["fraud_eval_days"])
        try:
            return plan_run(logical_date, data_interval_start, params["ds"], params["window_days"], features=features).to_dict()
        except RunParamsError as error:  # a misused Param: retrying cannot help
            raise AirflowFailException(str(error)) from None

    # Reschedule mode: between pokes the sensor holds no worker slot. The Param bounds the wait from
    # the end of day D (validation/landing.py); the timeout here is only a backstop beyond its maximum.
    @task.sensor(poke_interval=600, timeout=(72 + 24) * 3600, mode="reschedule")
    def wait_for_data(run_plan: dict, params=None, run_id=None, dag_run=None):
        import logging
        from datetime import UTC, timedelta

        from airflow.sdk import PokeReturnValue
        from airflow.sdk.exceptions import AirflowFailException

        from etl.config import resolve_warehouse_url
        from etl.runs import RunPlan
        from validation.landing import NoDataError, poke_landing

        run = RunPlan.from_dict(run_plan)
        # A scheduled run created late (its DAG was paused over its day) waits its full time from its start.
        late_start = dag_run.start_date if dag_run.run_type == "scheduled" and dag_run.start_date else None
        try:
            landing = poke_landing(
                resolve_warehouse_url(), run.ds, run_id, run.sources, timedelta(hours=params["wait_for_data_hours"]),
                waiting_since=late_start.astimezone(UTC).replace(tzinfo=None) if late_start else None,
            )
        except NoDataError as error:  # no retries: the day's time is up
            raise AirflowFailException(str(error)) from None
        if not landing.landed:
            logging.getLogger("airflow.task").info("%s; checking again in 10 minutes", landing.message())
        return PokeReturnValue(is_done=landing.landed, xcom_value=landing.message())

    @task
    def list_sources(run_plan: dict) -> list[str]:
        # Mapping needs a plain list XCom; the sources come from the deployment's settings at run time.
        return run_plan["sources"]

    # map_index_template: the UI lists the mapped extracts by table name instead of 0..7.
    @task(map_index_template="{{ source_table }}")
    def extract(table: str, run_plan: dict, params=None, run_id=None) -> dict:
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from etl.artifacts import load_artifact_store
        from etl.config import load_settings, resolve_warehouse_url
        from etl.contract import FEATURE_HISTORY_DAYS
        from etl.casting import ValueTypeError
        from etl.drift import SchemaDriftError
        from etl.extract import extract_source
        from etl.layout import extract_path, partition_paths
        from etl.runs import RunPlan

        get_current_context()["source_table"] = table
        run = RunPlan.from_dict(run_plan)
        warehouse_url = resolve_warehouse_url()
        partitions_dir = load_settings().partitions_dir(warehouse_url)
        # With shared artifacts (etl.artifacts) the store's partitions come to this worker first, and
        # the ones the extract writes go back after it, with the window's extract file.
        store = load_artifact_store()
        partitions = partition_paths(partitions_dir, table, run.window.days_with_history(FEATURE_HISTORY_DAYS))
        before = store.pull_files(partitions)
        try:
            extracted = extract_source(
                table, warehouse_url, run.window, run.layout.extract_dir,
                partitions_dir=partitions_dir, full_refresh=params["full_refresh"], history_days=FEATURE_HISTORY_DAYS,
            )
        except (SchemaDriftError, ValueTypeError) as error:
            # A data-quality failure like validate's: on record (data_quality_results), no retries.
            from validation.results import source_failure_outcomes, write_results

            write_results(warehouse_url, run.ds, run_id, source_failure_outcomes(error), table=error.table)
            raise AirflowFailException(str(error)) from None
        store.push_changed(before)
        store.push_files([extract_path(run.layout.extract_dir, table)])
        return extracted.to_dict()

    @task
    def validate(run_plan: dict, extracts: list[dict], run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from etl.artifacts import load_artifact_store
        from etl.config import load_settings, resolve_warehouse_url
        from etl.layout import extract_path
        from etl.runs import RunPlan
        from validation.suites import ValidationLimits
        from validation.validate import DataQualityError, validate_extracts

        run = RunPlan.from_dict(run_plan)
        store = load_artifact_store()
        store.pull_files([extract_path(run.layout.extract_dir, extract["table"]) for extract in extracts])
        try:
            validation = validate_extracts(
                extract_dir=run.layout.extract_dir,
                docs_dir=run.layout.data_docs_dir,
                warehouse_url=resolve_warehouse_url(),
                ds=run.ds,
                run_id=run_id,
                window_start=run.window.window_start,
                window_end=run.window.window_end,
                tables=[extract["table"] for extract in extracts],
                limits=ValidationLimits(money_ceiling=load_settings().money_ceiling),
            )
        except DataQualityError as error:
            # Bad data does not get better by retrying: fail now, with the reason in the log once
            # (from None: no second traceback of the library's frames under the same message). The
            # data docs show why, so they are shared even then.
            store.push_folder(run.layout.data_docs_dir)
            raise AirflowFailException(str(error)) from None
        store.push_folder(run.layout.data_docs_dir)
        return validation.to_dict()

    @task
    def build_features(run_plan: dict, validation: dict, params=None) -> dict:
        from etl.artifacts import load_artifact_store
        from etl.build_features import KeptDays, build_features
        from etl.config import FeatureConfig, load_settings, resolve_warehouse_url
        from etl.contract import FEATURE_HISTORY_DAYS
        from etl.extract import HISTORY_SOURCES
        from etl.layout import ITEM_TABLES_DIR, extract_path, partition_paths
        from etl.runs import RunPlan

        run = RunPlan.from_dict(run_plan)
        config = FeatureConfig(maturity_days=params["maturity_days"], fraud_eval_days=params["fraud_eval_days"])
        partitions_dir = load_settings().partitions_dir(resolve_warehouse_url())
        kept = KeptDays(partitions_dir, run.window.window_days, params["full_refresh"])
        store = load_artifact_store()
        history_days = run.window.days_with_history(FEATURE_HISTORY_DAYS)
        store.pull_files([extract_path(run.layout.extract_dir, table) for table in run.sources])
        store.pull_files([path for table in HISTORY_SOURCES for path in partition_paths(partitions_dir, table, history_days)])
        before = store.pull_files(kept.window_paths(run.ds, config, run.sources))
        features = build_features(run.layout.extract_dir, run.layout.features_dir, run.ds, config, run.sources, kept)
        # The kept days first: the features' impressions refer to them instead of holding a second copy.
        store.push_changed(before)
        store.push_folder(run.layout.features_dir, same_as_roots=[kept.version_dir(config, run.sources)], skip=[ITEM_TABLES_DIR])
        return features.to_dict()

    @task(**TRAINING_TASK_ARGS)
    def train_multitask(run_plan: dict, features: dict, params=None) -> dict:
        from etl.artifacts import load_artifact_store
        from etl.config import resolve_warehouse_url
        from etl.layout import ITEM_TABLES_DIR
        from etl.runs import RunPlan
        from training.config import MultiTaskConfig
        from training.gate import read_champion_dir
        from training.train import train_multitask

        run = RunPlan.from_dict(run_plan)
        store = load_artifact_store()
        store.pull_folder(run.layout.features_dir, keep=[ITEM_TABLES_DIR])
        config = MultiTaskConfig(
            seed=params["seed"],
            objectives=tuple(run.objectives),
            recent_days=params["recent_days"],
            replay_fraction=params["replay_fraction"],
        )
        warm_start_dir = read_champion_dir(resolve_warehouse_url(), MULTITASK) if params["warm_start"] else None
        trained = train_multitask(run.layout.features_dir, run.layout.model_dir(MULTITASK), config, warm_start_dir, versioned=True)
        store.push_folder(trained.output_dir)
        return trained.to_dict()

    @task(**TRAINING_TASK_ARGS)
    def train_fraud_baseline(run_plan: dict, features: dict, params=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from etl.artifacts import load_artifact_store
        from etl.layout import ITEM_TABLES_DIR
        from etl.runs import RunPlan
        from training.config import FraudLgbmConfig
        from training.fraud_lgbm import train_fraud_lgbm

        run = RunPlan.from_dict(run_plan)
        if "fraud" not in run.objectives:
            raise AirflowSkipException(f"No fraud objective: the configured sources {list(run.sources)} lack fraud labels or orders")
        config = FraudLgbmConfig(seed=params["seed"])
        store = load_artifact_store()
        store.pull_folder(run.layout.features_dir, keep=[ITEM_TABLES_DIR])
        trained = train_fraud_lgbm(run.layout.features_dir, run.layout.model_dir(FRAUD_LGBM), config, versioned=True)
        store.push_folder(trained.output_dir)
        return trained.to_dict()

    @task
    def gate(run_plan: dict, trained: dict) -> dict:
        """Champion/challenger: register the night's model and choose whose predictions publish."""
        from etl.artifacts import load_artifact_store
        from etl.config import resolve_warehouse_url
        from etl.layout import ITEM_TABLES_DIR
        from etl.runs import RunPlan
        from training.gate import select_scoring_model
        from training.summary import TrainingSummary

        run = RunPlan.from_dict(run_plan)
        model = TrainingSummary.from_dict(trained)
        store = load_artifact_store()
        store.pull_folder(run.layout.features_dir, keep=[ITEM_TABLES_DIR])
        store.pull_folder(model.output_dir)  # the champions come from the registry's locations (training.gate)
        champion_dir = run.layout.champion_dir(model.model_name)
        result = select_scoring_model(resolve_warehouse_url(), run.ds, model, run.layout.features_dir, champion_dir)
        for scored in result.champion_output_dirs():
            store.push_folder(scored)
        return result.to_dict()

    # none_failed: a deployment without fraud labels skips the LightGBM baseline but still publishes.
    @task(trigger_rule="none_failed", outlets=list(PUBLISHED_ASSETS.values()))
    def publish(run_plan: dict, multitask: dict, fraud_lgbm: dict | None, run_id=None, outlet_events=None) -> dict:
        """Day D's scores, model_runs and the gates' registry decisions, in one transaction; each
        table's Asset event says which day and how many rows (or why it was skipped)."""
        from etl.artifacts import load_artifact_store
        from etl.config import resolve_warehouse_url
        from etl.layout import ITEM_TABLES_DIR
        from etl.runs import RunPlan
        from training.gate import GateResult
        from training.publication import publish_night

        run = RunPlan.from_dict(run_plan)
        gates = [GateResult.from_dict(result) for result in (multitask, fraud_lgbm) if result]
        store = load_artifact_store()
        store.pull_folder(run.layout.features_dir, keep=[ITEM_TABLES_DIR])
        for output_dir in {path for gate in gates for path in gate.output_dirs()}:
            store.pull_folder(output_dir)
        published = publish_night(
            resolve_warehouse_url(),
            run.ds,
            run_id,
            run.objectives,
            run.layout.features_dir,
            gates,
            champion_dirs={gate.model_name: run.layout.champion_dir(gate.model_name) for gate in gates},
        )
        # A champion scored here (a decision made again against a newer champion) is shared too.
        scored_before = {path for gate in gates for path in gate.champion_output_dirs()}
        for result in published["gates"]:
            for output_dir in set(GateResult.from_dict(result).champion_output_dirs()) - scored_before:
                store.push_folder(output_dir)
        for table, asset in PUBLISHED_ASSETS.items():
            outlet_events[asset].extra = {
                "ds": published["ds"], "rows": published["rows"].get(table, 0), "skipped": published["skipped"].get(table),
            }
        return published

    @task
    def report(run_plan: dict, published: dict, run_id=None) -> str:
        """runs/D/report.html: metrics over the last nights, score distributions, calibration, GX summary."""
        import logging

        from etl.artifacts import load_artifact_store
        from etl.config import resolve_warehouse_url
        from etl.runs import RunPlan
        from reporting.report import write_run_report
        from training.gate import GateResult

        run = RunPlan.from_dict(run_plan)
        gates = [GateResult.from_dict(result) for result in published["gates"]]  # the decisions that took effect
        store = load_artifact_store()
        for output_dir in {path for gate in gates for path in gate.output_dirs()}:
            store.pull_folder(output_dir)
        store.pull_folder(run.layout.data_docs_dir, required=False)  # the page links to them
        path = write_run_report(
            resolve_warehouse_url(),
            run.ds,
            run_id,
            run.run_dir,
            run.objectives,
            scoring={result.model_name: result.scoring_dicts() for result in gates},
            decisions=[row for result in gates for row in result.decision.rows()],
        )
        store.push_folder(run.layout.plots_dir)
        store.push_files([path])  # after its plots, so a reader of the page finds them
        logging.getLogger("airflow.task").info("Run report for %s: %s", run.ds, store.location(path))
        return store.location(path)

    run_plan = plan()
    sources = list_sources(run_plan)
    wait_for_data(run_plan) >> sources
    extracts = extract.partial(run_plan=run_plan).expand(table=sources)
    validation = validate(run_plan, extracts)
    features = build_features(run_plan, validation)
    multitask_gate = gate.override(task_id="gate_multitask")(run_plan, train_multitask(run_plan, features))
    fraud_gate = gate.override(task_id="gate_fraud_baseline")(run_plan, train_fraud_baseline(run_plan, features))
    published = publish(run_plan, multitask_gate, fraud_gate)
    report(run_plan, published)


nightly_retrain()
