"""Bad input through the real nightly DAG, on SQLite and on PostgreSQL: each kind an operator found
(bad values, schema drift, broken references and clocks, unreadable images, misused Params) stops
the run with its rule named in data_quality_results, and leaves the score tables and the model
registry exactly as the last good night published them.

One good night is published per database, then kept as a snapshot; each case starts from it, breaks
one thing in day D's data, and runs the night again.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.warehouse import bind_timestamp, create_warehouse_engine, read_frame
from tests.dags.test_nightly_dag import DS, RUN_CONF, SCORE_ORDER, START, run_day

KEPT_TABLES = {**SCORE_ORDER, "model_registry": "model_name, model_version, objective"}
DAY_START, DAY_END = datetime(DS.year, DS.month, DS.day), datetime(DS.year, DS.month, DS.day) + timedelta(days=1)
PDF_BYTES = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"


def day_order(conn: Connection, after: timedelta = timedelta(0)) -> tuple[int, datetime]:
    """(order_id, created_at) of the first order of day D placed at least ``after`` into the day."""
    row = conn.execute(
        sa.text("SELECT order_id, created_at FROM orders WHERE created_at >= :start AND created_at < :end ORDER BY order_id LIMIT 1"),
        {"start": bind_timestamp(conn, DAY_START + after), "end": bind_timestamp(conn, DAY_END)},
    ).one()
    created_at = row[1] if isinstance(row[1], datetime) else datetime.fromisoformat(row[1])
    return int(row[0]), created_at


def day_item(conn: Connection) -> int:
    """An item of one of day D's order lines (validated with day D's rows)."""
    return int(conn.execute(
        sa.text("SELECT MIN(oi.item_id) FROM order_items oi JOIN orders o ON o.order_id = oi.order_id "
                "WHERE o.created_at >= :start AND o.created_at < :end"),
        {"start": bind_timestamp(conn, DAY_START), "end": bind_timestamp(conn, DAY_END)},
    ).scalar_one())  # fmt: skip


def postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def retype(conn: Connection, table: str, column: str, sql_type: str) -> None:
    """PostgreSQL keeps a column's type: an upstream release retyped it (the views reading it go first)."""
    for view in sa.inspect(conn).get_view_names():
        conn.execute(sa.text(f"DROP VIEW IF EXISTS {view} CASCADE"))
    conn.execute(sa.text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {sql_type} USING {column}::{sql_type}"))


def order_in_2030(conn: Connection) -> None:
    order_id, _ = day_order(conn)
    conn.execute(sa.text("UPDATE orders SET created_at = :at WHERE order_id = :id"),
                 {"at": bind_timestamp(conn, datetime(2030, 1, 1, 12)), "id": order_id})  # fmt: skip


def image_bytes(data: bytes) -> Callable[[Connection], None]:
    def replace_image(conn: Connection) -> None:
        item_id = conn.execute(sa.text("SELECT MIN(item_id) FROM item_images")).scalar_one()
        conn.execute(sa.text("UPDATE item_images SET image = :image, updated_at = :at WHERE item_id = :id"),
                     {"image": data, "at": bind_timestamp(conn, DAY_START + timedelta(hours=9)), "id": item_id})  # fmt: skip

    return replace_image


def price(value: float) -> Callable[[Connection], None]:
    def set_price(conn: Connection) -> None:
        if postgres(conn):  # NUMERIC(12,2) cannot hold it; a warehouse of DOUBLE PRECISION prices can
            retype(conn, "items", "price", "DOUBLE PRECISION")
        conn.execute(sa.text("UPDATE items SET price = :price WHERE item_id = :id"), {"price": value, "id": day_item(conn)})

    return set_price


def label_before_its_order(conn: Connection) -> None:
    order_id, created_at = day_order(conn, after=timedelta(hours=2))
    conn.execute(sa.text("DELETE FROM fraud_labels WHERE order_id = :id"), {"id": order_id})
    conn.execute(sa.text("INSERT INTO fraud_labels (order_id, is_fraud, labeled_at) VALUES (:id, :fraud, :at)"),
                 {"id": order_id, "fraud": True, "at": bind_timestamp(conn, created_at - timedelta(hours=1))})  # fmt: skip


def label_without_order(conn: Connection) -> None:
    conn.execute(sa.text("INSERT INTO fraud_labels (order_id, is_fraud, labeled_at) VALUES (:id, :fraud, :at)"),
                 {"id": 10**12, "fraud": True, "at": bind_timestamp(conn, DAY_START + timedelta(hours=12))})  # fmt: skip


def review_without_order(conn: Connection) -> None:
    conn.execute(sa.text("UPDATE reviews SET order_id = :missing WHERE review_id = (SELECT MIN(review_id) FROM reviews "
                         "WHERE created_at >= :start AND created_at < :end)"),
                 {"missing": 10**12, "start": bind_timestamp(conn, DAY_START), "end": bind_timestamp(conn, DAY_END)})  # fmt: skip


def drop_clicks_session_id(conn: Connection) -> None:
    if postgres(conn):
        for view in sa.inspect(conn).get_view_names():
            conn.execute(sa.text(f"DROP VIEW IF EXISTS {view} CASCADE"))
    conn.execute(sa.text("ALTER TABLE clicks DROP COLUMN session_id"))


def drop_reviews_created_at(conn: Connection) -> None:
    """The day column itself: the first task, which probes it for day D's rows, must not stumble on it."""
    if postgres(conn):
        for view in sa.inspect(conn).get_view_names():
            conn.execute(sa.text(f"DROP VIEW IF EXISTS {view} CASCADE"))
    conn.execute(sa.text("DROP INDEX ix_reviews_created_at"))
    conn.execute(sa.text("ALTER TABLE reviews DROP COLUMN created_at"))


def amount_as_text(conn: Connection) -> None:
    order_id, _ = day_order(conn)
    if postgres(conn):
        retype(conn, "orders", "amount", "TEXT")
    conn.execute(sa.text("UPDATE orders SET amount = :amount WHERE order_id = :id"), {"amount": "12,50 EUR", "id": order_id})


def created_at_text(text: str) -> Callable[[Connection], None]:
    def set_created_at(conn: Connection) -> None:
        order_id, _ = day_order(conn)
        if postgres(conn):  # a TIMESTAMP column cannot hold it; one retyped to TEXT can
            retype(conn, "orders", "created_at", "TEXT")
        conn.execute(sa.text("UPDATE orders SET created_at = :at WHERE order_id = :id"), {"at": text, "id": order_id})

    return set_created_at


def leave_as_is(conn: Connection) -> None:
    """The Param is the bad input."""


@dataclass(frozen=True)
class BadInput:
    """Break day D with ``corrupt``; the run must fail naming ``rule`` (table, column, expectation)
    on the database given, or a Param in ``conf`` must be refused."""

    corrupt: Callable[[Connection], None]
    rule: tuple[str, str | None, str] | None
    postgres_rule: tuple[str, str | None, str] | None = None  # where PostgreSQL names it otherwise
    conf: dict = field(default_factory=dict)


BETWEEN, OF_TYPE = "expect_column_values_to_be_between", "expect_column_values_to_be_of_type"
IMAGES = ("item_images", "image", "expect_column_values_to_be_decodable_images")
CASES = {
    "order_dated_2030": BadInput(order_in_2030, ("orders", "created_at", BETWEEN)),
    "image_that_is_a_pdf": BadInput(image_bytes(PDF_BYTES), IMAGES),
    "image_of_0_bytes": BadInput(image_bytes(b""), IMAGES),
    "price_1e308": BadInput(price(1e308), ("items", "price", BETWEEN)),
    "price_infinity": BadInput(price(float("inf")), ("items", "price", BETWEEN)),
    "label_before_its_order": BadInput(label_before_its_order, ("fraud_labels", "labeled_at", "expect_column_pair_values_a_to_be_greater_than_b")),
    "label_without_order": BadInput(label_without_order, ("fraud_labels", "order_id", "expect_column_values_to_be_in_set")),
    "review_without_order": BadInput(review_without_order, ("reviews", "order_id", "expect_column_values_to_be_in_set")),
    "missing_source_column": BadInput(drop_clicks_session_id, ("clicks", "session_id", "expect_table_columns_to_match_set")),
    "missing_day_column": BadInput(drop_reviews_created_at, ("reviews", "created_at", "expect_table_columns_to_match_set")),
    "amount_as_text": BadInput(amount_as_text, ("orders", "amount", OF_TYPE)),
    "timestamp_with_offset": BadInput(created_at_text(f"{DS} 10:00:00+02:00"), ("orders", "created_at", OF_TYPE),
                                      ("orders", "created_at", "expect_column_values_to_be_in_type_list")),
    "impossible_timestamp": BadInput(created_at_text(f"{DS} 25:61:00"), ("orders", "created_at", OF_TYPE),
                                     ("orders", "created_at", "expect_column_values_to_be_in_type_list")),
    "seed_minus_1": BadInput(leave_as_is, None, conf={"seed": -1}),
}  # fmt: skip


@dataclass(frozen=True)
class PublishedNight:
    """A warehouse holding one good published night, and how to put it back."""

    url: str
    home: Path
    restore: Callable[[], None]


def read_kept(url: str) -> dict[str, pl.DataFrame]:
    """Every row of the score tables and the model registry."""
    engine = create_warehouse_engine(url)
    with engine.connect() as conn:
        kept = {table: read_frame(conn, f"SELECT * FROM {table} ORDER BY ds, {order}" if table != "model_registry"
                                  else f"SELECT * FROM {table} ORDER BY {order}") for table, order in KEPT_TABLES.items()}  # fmt: skip
    engine.dispose()
    return kept


def sqlite_copy(source: str, target: str) -> None:
    """A consistent copy of a SQLite file (the backup API, WAL included)."""
    with sqlite3.connect(source) as source_db, sqlite3.connect(target) as target_db:
        source_db.backup(target_db)
    source_db.close()
    target_db.close()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def published_night(request, nightly_dag, tmp_path_factory) -> Iterator[PublishedNight]:
    from demo.synthetic import generate_warehouse

    home = tmp_path_factory.mktemp(f"bad_input_{request.param}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SHOPMTL_HOME", str(home))
        if request.param == "sqlite":
            url = f"sqlite:///{home / 'warehouse.db'}"
            snapshot = str(home / "published.db")
            generate_warehouse(url, START, DS, scale=0.1, seed=3)
            assert run_day(nightly_dag, DS) == "success"
            sqlite_copy(str(home / "warehouse.db"), snapshot)
            yield PublishedNight(url, home, lambda: sqlite_copy(snapshot, str(home / "warehouse.db")))
            return
        admin = request.getfixturevalue("postgres_admin")
        name = request.getfixturevalue("database_names")()
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        env.setenv("AIRFLOW_CONN_SHOPMTL_WAREHOUSE", url.replace("postgresql+psycopg://", "postgresql://"))

        def clone(source: str, target: str) -> None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": source})
                conn.exec_driver_sql(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')

        try:
            generate_warehouse(url, START, DS, scale=0.1, seed=3)
            assert run_day(nightly_dag, DS) == "success"
            clone(name, f"{name}_published")
            yield PublishedNight(url, home, lambda: clone(f"{name}_published", name))
        finally:
            with admin.connect() as conn:
                for database in (name, f"{name}_published"):
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def failed_instances(dag_run) -> list:
    """The task instances of ``dag_run`` that failed (not those skipped because an upstream failed)."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return [ti for ti in dag_run.get_task_instances(session=session) if str(ti.state) == "failed"]


def failed_rules(url: str) -> set[tuple[str, str | None, str]]:
    engine = create_warehouse_engine(url)
    with engine.connect() as conn:
        rows = read_frame(conn, "SELECT table_name, column_name, expectation FROM data_quality_results "
                                "WHERE success = :no AND critical = :yes", {"no": False, "yes": True})  # fmt: skip
    engine.dispose()
    return set(rows.iter_rows())


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_stops_the_night_by_name_and_keeps_the_last_good_rows(published_night, nightly_dag, case):
    from airflow.sdk.definitions.param import ParamValidationError

    bad = CASES[case]
    published_night.restore()
    good = read_kept(published_night.url)
    assert good["score_order_fraud"].height > 0 and good["model_registry"].height > 0
    engine = create_warehouse_engine(published_night.url)
    with engine.begin() as conn:
        bad.corrupt(conn)
        on_postgres = postgres(conn)
    engine.dispose()
    if bad.conf:
        with pytest.raises(ParamValidationError):
            run_day(nightly_dag, DS, **bad.conf)
    else:
        dag_run = nightly_dag.test(logical_date=datetime(DS.year, DS.month, DS.day, tzinfo=UTC), run_conf=RUN_CONF)
        assert str(dag_run.state) == "failed"
        rule = bad.postgres_rule if on_postgres and bad.postgres_rule else bad.rule
        assert rule in failed_rules(published_night.url)
        # Named failures are not retried: a raw driver error would have been, after 2 minutes each time.
        failed = failed_instances(dag_run)
        assert failed and {ti.try_number for ti in failed} == {1}, [(ti.task_id, ti.try_number) for ti in failed]
    after = read_kept(published_night.url)
    for table, rows in good.items():
        assert rows.equals(after[table]), f"{table} changed although the night failed on {case}"


@pytest.mark.slow
def test_undecodable_review_text_is_kept_counted_and_scored_not_fatal(published_night, nightly_dag):
    published_night.restore()
    engine = create_warehouse_engine(published_night.url)
    with engine.connect() as conn:
        review_id = conn.execute(
            sa.text("SELECT MIN(review_id) FROM reviews WHERE created_at >= :start AND created_at < :end"),
            {"start": bind_timestamp(conn, DAY_START), "end": bind_timestamp(conn, DAY_END)},
        ).scalar_one()
    engine.dispose()
    if published_night.url.startswith("postgresql"):
        # A UTF8 PostgreSQL database refuses such bytes when they are written: nothing to decode later.
        engine = create_warehouse_engine(published_night.url)
        with pytest.raises(sa.exc.DataError, match="invalid byte sequence for encoding"), engine.begin() as conn:
            conn.execute(sa.text("UPDATE reviews SET body = convert_from('\\x48e96c6c6f'::bytea, 'UTF8') WHERE review_id = :id"), {"id": review_id})
        engine.dispose()
        return
    serving = read_kept(published_night.url)["model_registry"].filter(status="champion")
    with sqlite3.connect(sa.make_url(published_night.url).database) as db:  # Latin-1 bytes stored as TEXT
        db.execute("UPDATE reviews SET body = CAST(X'48e96c6c6f' AS TEXT) WHERE review_id = ?", (review_id,))
    db.close()
    assert run_day(nightly_dag, DS) == "success"
    # The re-run trained other versions (its data changed) beside the ones that served, not over them.
    for version, path in serving.select("model_version", "artifact_path").unique().iter_rows():
        assert json.loads((Path(path) / "config.json").read_text())["model_version"] == version
    engine = create_warehouse_engine(published_night.url)
    with engine.connect() as conn:
        warnings = read_frame(conn, "SELECT critical, unexpected_count FROM data_quality_results WHERE success = :no "
                                    "AND table_name = 'reviews' AND column_name = 'body' AND expectation = :rule",
                              {"no": False, "rule": "expect_column_values_to_not_match_regex"})  # fmt: skip
        scored = conn.execute(sa.text("SELECT COUNT(*) FROM score_review_sentiment WHERE review_id = :id"), {"id": review_id}).scalar_one()
    engine.dispose()
    assert [(bool(critical), count) for critical, count in warnings.rows()] == [(False, 1)]
    assert scored == 1
