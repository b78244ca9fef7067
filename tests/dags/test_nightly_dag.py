"""The whole nightly DAG with dag.test() on a tiny demo warehouse: SQLite (the embedded default) and
PostgreSQL (through the shopmtl_warehouse connection)."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from etl.contract import ANY_SCENARIO
from etl.warehouse import bind_date, bind_timestamp, create_warehouse_engine, read_frame

START, DS = date(2026, 1, 1), date(2026, 1, 22)
RUN_CONF = {"window_days": 21, "maturity_days": 7, "fraud_eval_days": 5, "seed": 3}
SCORE_TABLES = ("score_user_item", "score_order_fraud", "score_review_sentiment", "score_item_category", "model_runs")
SCORE_ORDER = {
    "score_user_item": "user_id, scenario, rank",
    "score_order_fraud": "order_id",
    "score_review_sentiment": "review_id",
    "score_item_category": "item_id",
    "model_runs": "model_name, task, metric, scenario",
}


def run_day(dag, ds: date, **conf) -> str:
    """Run the DAG for day ``ds`` in-process and return the run's final state."""
    logical_date = datetime(ds.year, ds.month, ds.day, tzinfo=UTC)
    dag_run = dag.test(logical_date=logical_date, run_conf={**RUN_CONF, **conf})
    return str(dag_run.state)


def read_published(warehouse_url: str, ds: date) -> dict[str, pl.DataFrame]:
    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn:
        frames = {
            table: read_frame(conn, f"SELECT * FROM {table} WHERE ds = :ds ORDER BY {SCORE_ORDER[table]}", {"ds": bind_date(conn, ds)}, table=table)
            for table in SCORE_TABLES
        }
    engine.dispose()
    return frames


def assert_published_day(warehouse_url: str, ds: date) -> dict[str, pl.DataFrame]:
    published = read_published(warehouse_url, ds)
    recommendations, fraud, reviews, categories, runs = (published[t] for t in SCORE_TABLES)
    assert all(frame.height > 0 for frame in published.values()), {t: f.height for t, f in published.items()}
    # Top 20 per user and scenario, ranks 1..n, no duplicates; the scenarios are the users' surfaces of day D.
    per_list = recommendations.group_by("user_id", "scenario").agg(pl.len().alias("n"), pl.col("rank").max().alias("max_rank"))
    assert per_list["n"].max() <= 20 and (per_list["n"] == per_list["max_rank"]).all()
    assert recommendations.select("user_id", "scenario", "item_id").is_duplicated().sum() == 0
    assert set(recommendations["scenario"]) <= {"home_feed", "search", "product_page", "cart", ANY_SCENARIO}
    assert recommendations["scenario"].n_unique() > 2
    assert (recommendations["p_purchase"] <= recommendations["p_click"] + 1e-9).all()
    # Every order of day D is scored by both models.
    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn:
        day = {"start": bind_timestamp(conn, ds), "end": bind_timestamp(conn, ds + timedelta(days=1))}
        day_reviews = read_frame(conn, "SELECT review_id FROM reviews WHERE created_at >= :start AND created_at < :end ORDER BY review_id", day)
        orders = read_frame(
            conn,
            "SELECT order_id FROM orders WHERE created_at >= :start AND created_at < :end ORDER BY order_id",
            {"start": bind_timestamp(conn, ds), "end": bind_timestamp(conn, ds + timedelta(days=1))},
        )
    engine.dispose()
    assert fraud["order_id"].to_list() == orders["order_id"].to_list()
    assert reviews["review_id"].to_list() == day_reviews["review_id"].to_list()
    assert set(runs["task"]) == {"click", "purchase", "review", "category", "fraud"}
    assert set(runs.filter(pl.col("task") != "category")["metric"]) == {"auc", "pr_auc", "log_loss"}
    assert set(runs.filter(task="category")["metric"]) >= {"accuracy", "log_loss"}
    assert reviews["p_negative"].is_between(0, 1).all()
    assert categories["confidence"].is_between(0, 1).all() and categories["listed_category"].null_count() == 0
    assert set(runs["model_name"]) == {"multitask", "fraud_lgbm"}
    return published


def check_oracle_comparison(warehouse_url: str, run_dir: Path) -> None:
    """The demo's model-vs-truth table covers every task on the same rows, and the truth is informative."""
    from demo.oracle import compare_with_oracle

    comparison = compare_with_oracle(warehouse_url, run_dir)
    assert set(zip(comparison["task"], comparison["model"])) == {
        ("click", "multitask"), ("click", "oracle"), ("purchase", "multitask"), ("purchase", "oracle"),
        ("fraud", "multitask"), ("fraud", "fraud_lgbm"), ("fraud", "oracle"),
        ("review", "multitask"), ("review", "oracle"), ("category", "multitask"), ("category", "oracle"),
    }
    assert comparison.group_by("task").agg(pl.col("n_rows").n_unique())["n_rows"].to_list() == [1] * 5
    oracle_click_auc = comparison.filter(task="click", model="oracle")["auc"][0]
    assert oracle_click_auc > 0.6


def assert_report_with_plots(report: Path) -> None:
    """The report task wrote report.html, and every image it references is a PNG next to it."""
    import re

    from PIL import Image

    assert report.is_file(), "the report task wrote no report.html"
    sources = re.findall(r'<img src="([^"]+)"', report.read_text())
    assert len(sources) == 3, sources  # metric history, score distributions, calibration
    for source in sources:
        with Image.open(report.parent / source) as image:
            assert image.format == "PNG" and min(image.size) > 0


def asset_events(uri: str) -> list[dict]:
    """The extras of the Asset events of ``uri`` in Airflow's metadata database, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(AssetEvent.extra).join(AssetModel, AssetModel.id == AssetEvent.asset_id).where(AssetModel.uri == uri)
        return list(session.scalars(query.order_by(AssetEvent.id)))


def drop_truth_tables(warehouse_url: str) -> None:
    engine = create_warehouse_engine(warehouse_url)
    with engine.begin() as conn:
        for table in ("truth_impressions", "truth_orders", "truth_reviews", "truth_items"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


@pytest.mark.slow
def test_nightly_dag_on_the_embedded_warehouse_is_idempotent_and_never_reads_truth(nightly_dag, shopmtl_home):
    from etl.config import load_settings
    from demo.synthetic import generate_warehouse

    warehouse_url = load_settings().embedded_warehouse_url  # no connection defined: the embedded default
    generate_warehouse(warehouse_url, START, DS, scale=0.3, seed=3)
    drop_truth_tables(warehouse_url)  # the pipeline must not need the generator's truth

    assert run_day(nightly_dag, DS) == "success"
    first = assert_published_day(warehouse_url, DS)
    assert (shopmtl_home / "runs" / DS.isoformat() / "extract" / "orders.parquet").exists()
    # The gates' decisions took effect with the day (training/publication.py): both models serve.
    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn:
        champions = read_frame(conn, "SELECT model_name, objective FROM model_registry WHERE status = 'champion' ORDER BY 1, 2")
    engine.dispose()
    assert champions.rows() == [("fraud_lgbm", "fraud"), *(("multitask", o) for o in ("category", "click", "fraud", "purchase", "review"))]
    assert_report_with_plots(shopmtl_home / "runs" / DS.isoformat() / "report.html")
    # Each published table's Asset got an event saying the day and its rows.
    events = asset_events("x-shopmtl://warehouse/score_order_fraud")
    assert events[-1] == {"ds": DS.isoformat(), "rows": first["score_order_fraud"].height, "skipped": None}

    assert run_day(nightly_dag, DS) == "success"  # the same day again replaces it
    second = assert_published_day(warehouse_url, DS)
    for table in ("score_user_item", "score_order_fraud"):
        assert first[table].equals(second[table]), f"{table} changed on a re-run"
    assert first["model_runs"].drop("run_id", "created_at").equals(second["model_runs"].drop("run_id", "created_at"))


@pytest.mark.slow
def test_bad_data_stops_the_run_before_publishing_and_keeps_the_last_good_scores(nightly_dag, shopmtl_home, capfd):
    from etl.config import load_settings
    from demo.synthetic import generate_warehouse

    warehouse_url = load_settings().embedded_warehouse_url
    generate_warehouse(warehouse_url, START, DS, scale=0.3, seed=3)
    assert run_day(nightly_dag, DS) == "success"
    good = read_published(warehouse_url, DS)
    check_oracle_comparison(warehouse_url, shopmtl_home / "runs" / DS.isoformat())

    engine = create_warehouse_engine(warehouse_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE orders SET amount = -1 * amount WHERE order_id IN (SELECT order_id FROM orders "
                             "WHERE created_at >= :day ORDER BY order_id LIMIT 3)"), {"day": bind_timestamp(conn, DS)})
    capfd.readouterr()
    assert run_day(nightly_dag, DS) == "failed"
    # The task log says what was wrong: table.column, the rule, how many rows, sample values.
    task_log = "".join(capfd.readouterr())
    assert "Data quality check failed for ds=2026-01-22" in task_log
    assert task_log.count("orders.amount: expect_column_values_to_be_between failed: 3 unexpected") == 1  # once
    assert "The above exception was the direct cause" not in task_log  # one traceback, not two
    after = read_published(warehouse_url, DS)
    for table in SCORE_TABLES:
        assert good[table].equals(after[table]), f"{table} changed although validation failed"
    with engine.connect() as conn:
        failures = read_frame(conn, "SELECT table_name, column_name, expectation, unexpected_count FROM data_quality_results "
                                    "WHERE success = :no AND critical = :yes", {"no": False, "yes": True})
    engine.dispose()
    assert ("orders", "amount") in set(zip(failures["table_name"], failures["column_name"]))


@pytest.mark.slow
@pytest.mark.postgres
def test_nightly_dag_on_postgresql_through_the_airflow_connection(nightly_dag, shopmtl_home, postgres_url, monkeypatch):
    from demo.synthetic import generate_warehouse

    generate_warehouse(postgres_url, START, DS, scale=0.3, seed=3)
    monkeypatch.setenv("AIRFLOW_CONN_SHOPMTL_WAREHOUSE", postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    assert run_day(nightly_dag, DS) == "success"
    assert run_day(nightly_dag, DS) == "success"
    published = assert_published_day(postgres_url, DS)
    assert published["score_order_fraud"]["order_id"].is_unique().all()
    assert not (shopmtl_home / "warehouse.db").exists(), "the embedded warehouse was used instead of the connection"


@pytest.mark.slow
def test_a_deployment_with_only_catalogue_images_trains_and_publishes_the_category_task(nightly_dag, shopmtl_home, monkeypatch):
    from etl.config import load_settings
    from demo.synthetic import generate_warehouse

    monkeypatch.setenv("SHOPMTL_SOURCES", "items,item_images")
    warehouse_url = load_settings().embedded_warehouse_url
    generate_warehouse(warehouse_url, START, DS, scale=0.3, seed=3)
    assert run_day(nightly_dag, DS) == "success"
    published = read_published(warehouse_url, DS)
    assert published["score_item_category"].height > 0
    assert published["score_user_item"].height == published["score_order_fraud"].height == 0
    assert published["score_review_sentiment"].height == 0
    assert set(published["model_runs"]["task"]) == {"category"}
    assert not (shopmtl_home / "runs" / DS.isoformat() / "extract" / "clicks.parquet").exists()


@pytest.mark.slow
def test_a_backfill_weeks_later_reproduces_the_original_scores_of_the_day(nightly_dag, shopmtl_home):
    """Day D re-run after more days (and D's late fraud labels) reached the warehouse, and after a newer
    champion was trained: point-in-time extraction, the mature-label cut-off and deterministic training
    give the scores of the original night, row for row."""
    from etl.config import load_settings
    from demo.synthetic import generate_warehouse

    warehouse_url = load_settings().embedded_warehouse_url
    generate_warehouse(warehouse_url, START, DS, scale=0.3, seed=3)
    engine = create_warehouse_engine(warehouse_url)
    with engine.begin() as conn:  # on the night of D, labels reported after D have not arrived yet
        night_end = {"end": bind_timestamp(conn, DS + timedelta(days=1))}
        late_labels = conn.execute(sa.text("DELETE FROM fraud_labels WHERE labeled_at >= :end"), night_end).rowcount
    assert late_labels > 0
    assert run_day(nightly_dag, DS) == "success"
    original = read_published(warehouse_url, DS)

    # Weeks later: a week more of data, D's late labels arrived, and a newer model ran.
    generate_warehouse(warehouse_url, START, DS + timedelta(days=7), scale=0.3, seed=3)
    with engine.connect() as conn:
        arrived = conn.execute(sa.text("SELECT COUNT(*) FROM fraud_labels WHERE labeled_at >= :end"), night_end).scalar()
        later_orders = conn.execute(sa.text("SELECT COUNT(*) FROM orders WHERE created_at >= :end"), night_end).scalar()
    engine.dispose()
    assert arrived > late_labels and later_orders > 0
    assert run_day(nightly_dag, DS + timedelta(days=1)) == "success"

    assert run_day(nightly_dag, DS) == "success"  # the backfill of D
    backfilled = read_published(warehouse_url, DS)
    for table in SCORE_TABLES:
        before, after = original[table], backfilled[table]
        if table == "model_runs":
            before, after = before.drop("run_id", "created_at"), after.drop("run_id", "created_at")
        assert before.height > 0
        assert before.equals(after), f"{table} of {DS} differs when backfilled later"


def test_every_numeric_param_is_bounded(nightly_dag):
    for name, param in nightly_dag.params.items():
        schema = param.schema
        types = schema.get("type") if isinstance(schema.get("type"), list) else [schema.get("type")]
        if {"integer", "number"} & set(types):
            assert "minimum" in schema and "maximum" in schema, name
    assert nightly_dag.params.get_param("seed").schema["maximum"] == 2**32 - 1


@pytest.mark.parametrize("conf", [{"seed": -1}, {"seed": 2**32}, {"window_days": 0}, {"replay_fraction": 1.5}, {"seed": "7"}])
def test_a_bad_param_is_refused_before_any_task_runs(nightly_dag, shopmtl_home, conf):
    from airflow.sdk.definitions.param import ParamValidationError

    logical_date = datetime(2026, 1, 22, tzinfo=UTC)
    with pytest.raises(ParamValidationError):
        nightly_dag.test(logical_date=logical_date, run_conf={**RUN_CONF, **conf})
    assert not (shopmtl_home / "runs").exists()  # no task ran: plan would have made the run's directory


def test_params_that_together_leave_no_training_labels_fail_the_first_task_without_retries(nightly_dag, shopmtl_home):
    # Each is within its bounds; together no order is old enough to train the fraud models on.
    assert run_day(nightly_dag, DS, window_days=10, maturity_days=7, fraud_eval_days=5) == "failed"
    assert not (shopmtl_home / "runs").exists()  # plan refused it: nothing extracted, nothing written
    assert not (shopmtl_home / "warehouse.db").exists()


@pytest.mark.slow
def test_a_day_long_before_the_demo_runs_its_tasks_and_fails_loudly_without_data(nightly_dag, shopmtl_home, capfd):
    from etl.config import load_settings
    from demo.synthetic import generate_warehouse

    warehouse_url = load_settings().embedded_warehouse_url
    generate_warehouse(warehouse_url, START, START + timedelta(days=3), scale=0.1, seed=3)
    # Before: a day before the DAG's start_date ran no task and reported success. Now its first task
    # runs, finds no data for the day, and (the day ended long ago) gives up at once, saying so.
    capfd.readouterr()
    assert run_day(nightly_dag, date(2015, 6, 1)) == "failed"
    assert "No data for 2015-06-01 yet: clicks, orders, reviews hold no row dated 2015-06-01" in "".join(capfd.readouterr())
    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn:
        failures = read_frame(conn, "SELECT table_name, expectation FROM data_quality_results WHERE ds = '2015-06-01' "
                                    "ORDER BY table_name")  # fmt: skip
        published = conn.execute(sa.text("SELECT COUNT(*) FROM score_user_item")).scalar() if sa.inspect(conn).has_table("score_user_item") else 0
    engine.dispose()
    assert failures.rows() == [(table, "expect_table_row_count_to_be_between") for table in ("clicks", "orders", "reviews")]
    assert published == 0


@pytest.mark.slow
def test_schema_drift_in_a_source_stops_the_run_by_name_with_a_data_quality_row(nightly_dag, shopmtl_home):
    from etl.config import load_settings
    from demo.synthetic import generate_warehouse

    warehouse_url = load_settings().embedded_warehouse_url
    generate_warehouse(warehouse_url, START, DS, scale=0.1, seed=3)
    engine = create_warehouse_engine(warehouse_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE clicks DROP COLUMN session_id"))  # an upstream release renamed it
    engine.dispose()
    assert run_day(nightly_dag, DS) == "failed"
    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn:
        rows = read_frame(conn, "SELECT table_name, column_name, expectation, critical, success FROM data_quality_results")
        published = conn.execute(sa.text("SELECT COUNT(*) FROM score_user_item")).scalar() if sa.inspect(conn).has_table("score_user_item") else 0
    engine.dispose()
    assert rows.filter(~pl.col("success").cast(pl.Boolean)).select("table_name", "column_name", "expectation").rows() == [
        ("clicks", "session_id", "expect_table_columns_to_match_set")
    ]
    assert published == 0
