"""Extraction reads nothing after the interval end, on SQLite and on PostgreSQL."""
from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest
import sqlalchemy as sa

from etl.contract import SOURCE_TABLES
from etl.extract import EXTRACT_SQL_DIR, ExtractWindow, extract_query, extract_sources
from etl.warehouse import TABLE_SCHEMAS, create_tables, create_warehouse_engine, insert_frame

DS = date(2026, 3, 10)
END = datetime(2026, 3, 11)  # end of day D's data interval


def _frame(table: str, rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TABLE_SCHEMAS[table], orient="row")


def seed_point_in_time_rows(url: str) -> None:
    engine = create_warehouse_engine(url)
    create_tables(engine)
    with engine.begin() as conn:
        insert_frame(conn, "users", _frame("users", [(1, datetime(2026, 1, 1), "DE", 1980), (2, END, "FR", None)]))
        insert_frame(conn, "items", _frame("items", [(10, "books", 9.99, 5, "a book", datetime(2026, 1, 1)),
                                                     (11, "toys", 5.0, 5, "a toy", END)]))
        insert_frame(conn, "item_images", _frame("item_images", [(10, b"\x89PNG", datetime(2026, 1, 1))]))
        insert_frame(conn, "clicks", _frame("clicks", [
            (100, datetime(2026, 2, 10), 1, 10, "s0", "impression", 1, "search"),     # before the 28-day window
            (101, datetime(2026, 3, 10, 23, 59), 1, 10, "s1", "impression", 2, None),
            (102, END, 1, 10, "s2", "impression", 1, "home_feed"),                    # first instant after D: excluded
        ]))
        insert_frame(conn, "orders", _frame("orders", [
            (200, 1, datetime(2026, 3, 1), 20.0, "card", "d1", "ip1", "web", "DE", "completed"),
            (201, 1, datetime(2026, 3, 11, 8), 30.0, "card", "d1", "ip1", "web", "DE", "completed"),
        ]))
        insert_frame(conn, "order_items", _frame("order_items", [(200, 10, 2, 10.0), (201, 10, 3, 10.0)]))
        insert_frame(conn, "fraud_labels", _frame("fraud_labels", [(200, True, datetime(2026, 3, 12))]))  # known only after D
        insert_frame(conn, "reviews", _frame("reviews", [
            (300, 200, 1, 10, 5, "great", "really great", datetime(2026, 3, 5)),
            (301, 200, 1, 10, 1, None, None, datetime(2026, 3, 11, 1)),
        ]))
    engine.dispose()


def test_extract_reads_only_the_window_and_labels_known_at_the_cutoff(warehouse_url, tmp_path):
    seed_point_in_time_rows(warehouse_url)
    results = extract_sources(warehouse_url, ExtractWindow(ds=DS, window_days=28), tmp_path)
    assert {r.table: r.rows for r in results} == {
        "users": 1, "items": 1, "item_images": 1, "clicks": 1, "orders": 1, "order_items": 1, "fraud_labels": 0, "reviews": 1,
    }
    clicks = pl.read_parquet(tmp_path / "clicks.parquet")
    assert clicks["event_id"].to_list() == [101]
    assert clicks.schema == pl.Schema(TABLE_SCHEMAS["clicks"])
    assert pl.read_parquet(tmp_path / "item_images.parquet")["image"].to_list() == [b"\x89PNG"]
    assert pl.read_parquet(tmp_path / "reviews.parquet")["review_id"].to_list() == [300]


def test_every_source_has_one_extract_query_file_bound_to_the_window():
    assert sorted(path.stem for path in EXTRACT_SQL_DIR.glob("*.sql")) == sorted(SOURCE_TABLES)
    for table in SOURCE_TABLES:
        query = extract_query(table)
        assert ":window_end" in query and "ORDER BY" in query, table
        assert ";" not in query, table  # one statement per file
    with pytest.raises(ValueError, match="Unknown source table"):
        extract_query("truth_orders")


@pytest.mark.postgres
def test_arrow_read_gives_the_frames_the_row_read_gives(postgres_url):
    """PostgreSQL extracts stream into Arrow (ADBC, binary COPY); every source, value for value the same frame."""
    from demo.synthetic import generate_warehouse
    from etl.warehouse import bind_timestamp, arrow_query_to_frame, read_frame

    generate_warehouse(postgres_url, date(2026, 3, 1), DS, scale=0.05, seed=3)
    engine = create_warehouse_engine(postgres_url)
    with engine.begin() as conn:  # values a text format could mangle: quotes, commas, newlines, empty vs NULL, bytes
        insert_frame(conn, "reviews", _frame("reviews", [
            (990_000_001, 200, 1, 10, 2, "", 'said "no", then\nleft', datetime(2026, 3, 10, 12)),
            (990_000_002, 200, 1, 10, 4, None, "ok \\x41", datetime(2026, 3, 10, 12, 0, 0, 1)),
        ]))
        insert_frame(conn, "item_images", _frame("item_images", [(990_000_003, b"\x00\x01,\n\"\xff", datetime(2026, 3, 10))]))
        insert_frame(conn, "orders", _frame("orders", [
            (990_000_004, 1, datetime(2026, 3, 9), 20.0, "card", "d1", "ip1", "web", "DE", "completed"),
        ]))
        insert_frame(conn, "fraud_labels", _frame("fraud_labels", [(990_000_004, True, datetime(2026, 3, 10, 9))]))
    window = ExtractWindow(ds=DS, window_days=28)
    with engine.connect() as conn:
        params = {"window_start": bind_timestamp(conn, window.window_start), "window_end": bind_timestamp(conn, window.window_end)}
        for table in SOURCE_TABLES:
            by_rows = read_frame(conn, extract_query(table), params, table=table)
            by_arrow = arrow_query_to_frame(conn, extract_query(table), params, table=table)
            assert by_rows.height > 0, table
            assert by_arrow.schema == by_rows.schema and by_arrow.equals(by_rows), table
        empty = {"window_start": params["window_start"], "window_end": params["window_start"]}  # no rows at all
        by_rows = read_frame(conn, extract_query("clicks"), empty, table="clicks")
        by_arrow = arrow_query_to_frame(conn, extract_query("clicks"), empty, table="clicks")
        assert by_arrow.height == 0 and by_arrow.schema == by_rows.schema
    engine.dispose()


@pytest.mark.postgres
def test_arrow_read_binds_parameters_as_values_never_as_sql(postgres_url):
    """The Arrow read binds ``:name`` parameters on the client (so ADBC can use COPY): quotes, ``%``,
    ``;`` and a comment marker in a value stay a value, and a literal ``%`` in the query stays itself."""
    from etl.warehouse import arrow_query_to_frame

    engine = create_warehouse_engine(postgres_url)
    create_tables(engine)
    hostile = "x'); DROP TABLE users; -- 100% \\ \"q\""
    with engine.begin() as conn:
        insert_frame(conn, "users", _frame("users", [(1, datetime(2026, 3, 1), hostile, 1990), (2, datetime(2026, 3, 1), "DE", 1991)]))
    query = "SELECT user_id, country FROM users WHERE country = :country OR country LIKE 'D%' ORDER BY user_id"
    with engine.connect() as conn:
        frame = arrow_query_to_frame(conn, query, {"country": hostile}, table="users")
        assert frame.get_column("country").to_list() == [hostile, "DE"]
        assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one() == 2  # nothing was dropped
    engine.dispose()


def test_partitioned_extract_equals_the_whole_window_query_on_the_point_in_time_rows(warehouse_url, tmp_path):
    """Event sources assembled from daily partitions (``partitions_dir``): the same files, every source."""
    seed_point_in_time_rows(warehouse_url)
    window = ExtractWindow(ds=DS, window_days=28)
    whole = extract_sources(warehouse_url, window, tmp_path / "whole")
    partitioned = extract_sources(warehouse_url, window, tmp_path / "partitioned", partitions_dir=tmp_path / "partitions")
    assert [r.rows for r in partitioned] == [r.rows for r in whole]
    for table in SOURCE_TABLES:
        left, right = pl.read_parquet(tmp_path / "whole" / f"{table}.parquet"), pl.read_parquet(tmp_path / "partitioned" / f"{table}.parquet")
        assert left.schema == right.schema and left.equals(right), table
    assert len(list((tmp_path / "partitions" / "clicks").glob("*.parquet"))) == 28


def test_undecodable_review_text_in_sqlite_is_kept_with_replacement_characters_and_counted(sqlite_url, tmp_path):
    import sqlite3

    from validation.suites import ValidationWindow, build_suite

    seed_point_in_time_rows(sqlite_url)
    connection = sqlite3.connect(sa.make_url(sqlite_url).database)
    # bytes that are not UTF-8, stored as TEXT (a feed written in Latin-1, a truncated multi-byte character)
    connection.execute("UPDATE reviews SET body = CAST(X'48E96C6C6FFF' AS TEXT) WHERE review_id = 300")
    connection.commit()
    connection.close()
    results = extract_sources(sqlite_url, ExtractWindow(ds=DS, window_days=28), tmp_path, ("reviews",))
    assert [r.rows for r in results] == [1]
    body = pl.read_parquet(tmp_path / "reviews.parquet")["body"].to_list()
    assert body == ["H\ufffdllo\ufffd"]
    # ...and validation counts it as a warning, naming the column: kept, not fatal.
    window = ValidationWindow(datetime(2026, 2, 11), END, datetime(2026, 3, 10))
    rules = [e for e in build_suite("reviews", window).expectations if type(e).__name__ == "ExpectColumnValuesToNotMatchRegex"]
    assert {(rule.column, rule.regex, rule.severity) for rule in rules} == {("title", "\ufffd", "warning"), ("body", "\ufffd", "warning")}


def test_a_source_table_without_a_contract_column_is_named_as_schema_drift(warehouse_url, tmp_path):
    from etl.drift import SchemaDriftError
    from etl.extract import extract_source

    seed_point_in_time_rows(warehouse_url)
    engine = create_warehouse_engine(warehouse_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE orders DROP COLUMN device_id"))
    engine.dispose()
    with pytest.raises(SchemaDriftError, match=r"orders lacks column\(s\) \['device_id'\]") as raised:
        extract_source("orders", warehouse_url, ExtractWindow(ds=DS, window_days=28), tmp_path)
    assert raised.value.table == "orders" and "device_id" not in raised.value.found
    assert not (tmp_path / "orders.parquet").exists()
    # A table that is not there at all is drift too, and says so.
    engine = create_warehouse_engine(warehouse_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE reviews CASCADE" if conn.dialect.name == "postgresql" else "DROP TABLE reviews"))
    engine.dispose()
    with pytest.raises(SchemaDriftError, match="reviews is missing"):
        extract_source("reviews", warehouse_url, ExtractWindow(ds=DS, window_days=28), tmp_path)


def test_values_that_do_not_read_as_their_type_are_named_with_table_column_and_samples(warehouse_url, tmp_path):
    from etl.casting import ValueTypeError

    seed_point_in_time_rows(warehouse_url)
    engine = create_warehouse_engine(warehouse_url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # PostgreSQL keeps types: the column itself was retyped upstream
            conn.execute(sa.text("ALTER TABLE order_items ALTER COLUMN unit_price TYPE TEXT USING unit_price::text"))
        conn.execute(sa.text("UPDATE order_items SET unit_price = '12,50 EUR' WHERE order_id = 200"))
    engine.dispose()
    with pytest.raises(ValueTypeError) as raised:
        extract_sources(warehouse_url, ExtractWindow(ds=DS, window_days=28), tmp_path, ("order_items",))
    error = raised.value
    assert (error.table, error.column, error.count, error.samples) == ("order_items", "unit_price", 1, ["12,50 EUR"])
    assert "order_items.unit_price: 1 value(s) cannot be read as Float64" in str(error)


@pytest.mark.parametrize("stamp", ["2026-03-01 10:00:00+02:00", "2026-03-01 25:61:00", "2026-03-01T10:00:00Z"])
def test_sqlite_timestamps_with_an_offset_or_impossible_are_named(sqlite_url, tmp_path, stamp):
    import sqlite3

    from etl.casting import ValueTypeError

    seed_point_in_time_rows(sqlite_url)
    connection = sqlite3.connect(sa.make_url(sqlite_url).database)
    connection.execute("UPDATE reviews SET created_at = ? WHERE review_id = 300", (stamp,))
    connection.commit()
    connection.close()
    # the text sorts inside the window, so the extract's time filter lets the row through to typing
    with pytest.raises(ValueTypeError, match=r"reviews\.created_at: 1 value\(s\) cannot be read as Datetime") as raised:
        extract_sources(sqlite_url, ExtractWindow(ds=DS, window_days=28), tmp_path, ("reviews",))
    assert raised.value.samples == [stamp]


@pytest.mark.postgres
def test_a_retyped_column_the_extract_cannot_read_is_named_as_schema_drift_and_a_readable_one_is_read(postgres_url, tmp_path):
    from etl.drift import SchemaDriftError
    from validation.results import source_failure_outcomes

    seed_point_in_time_rows(postgres_url)
    engine = create_warehouse_engine(postgres_url)
    with engine.begin() as conn:
        # an upstream release stores times as text and prices as floats (dropping the views that read them)
        for view in sa.inspect(conn).get_view_names():
            conn.execute(sa.text(f"DROP VIEW IF EXISTS {view} CASCADE"))
        conn.execute(sa.text("ALTER TABLE orders ALTER COLUMN created_at TYPE TEXT USING to_char(created_at, 'DD.MM.YYYY HH24:MI')"))
        conn.execute(sa.text("ALTER TABLE items ALTER COLUMN price TYPE DOUBLE PRECISION"))
    engine.dispose()
    window = ExtractWindow(ds=DS, window_days=28)
    assert [r.rows for r in extract_sources(postgres_url, window, tmp_path, ("items",))] == [1]
    for table in ("orders", "fraud_labels"):  # the labels are read through their order's time
        with pytest.raises(SchemaDriftError, match=r"orders has retyped column\(s\): created_at is TEXT") as raised:
            extract_sources(postgres_url, window, tmp_path, (table,))
        assert raised.value.table == "orders" and raised.value.retyped == {"created_at": "TEXT"}
        assert "operator does not exist" in str(raised.value)
    [outcome] = source_failure_outcomes(raised.value)
    assert (outcome.table, outcome.column, outcome.expectation, outcome.success, outcome.critical) == (
        "orders", "created_at", "expect_column_values_to_be_in_type_list", False, True,
    )
    assert not (tmp_path / "orders.parquet").exists()


@pytest.mark.postgres
def test_a_timestamp_with_time_zone_column_reads_as_utc_whatever_the_server_time_zone(postgres_url, tmp_path):
    seed_point_in_time_rows(postgres_url)
    database = sa.make_url(postgres_url).database
    engine = create_warehouse_engine(postgres_url)
    with engine.begin() as conn:
        for view in sa.inspect(conn).get_view_names():
            conn.execute(sa.text(f"DROP VIEW IF EXISTS {view} CASCADE"))
        conn.execute(sa.text("ALTER TABLE orders ALTER COLUMN created_at TYPE TIMESTAMPTZ USING created_at AT TIME ZONE 'UTC'"))
        conn.execute(sa.text(f'ALTER DATABASE "{database}" SET timezone = \'Asia/Tokyo\''))
    engine.dispose()
    engine = create_warehouse_engine(postgres_url)
    with engine.begin() as conn:  # 23:30 UTC on day D is 08:30 the next day in Tokyo
        conn.execute(sa.text("INSERT INTO orders VALUES (202, 1, '2026-03-10 23:30:00+00', 5.0, 'card', 'd1', 'ip1', 'web', 'DE', 'completed')"))
    engine.dispose()
    extract_sources(postgres_url, ExtractWindow(ds=DS, window_days=28), tmp_path, ("orders",))
    orders = pl.read_parquet(tmp_path / "orders.parquet")
    assert orders.select("order_id", "created_at").rows() == [(200, datetime(2026, 3, 1)), (202, datetime(2026, 3, 10, 23, 30))]


@pytest.mark.parametrize(
    ("table", "column", "value", "key"),
    [("fraud_labels", "is_fraud", 2, "order_id = 200"), ("reviews", "rating", 4.5, "review_id = 300"),
     ("order_items", "item_id", 10.7, "order_id = 200"), ("users", "birth_year", "1980s", "user_id = 1")],
)  # fmt: skip
def test_sqlite_values_a_cast_would_bend_are_named_not_truncated_or_guessed(sqlite_url, tmp_path, table, column, value, key):
    import sqlite3

    from etl.casting import ValueTypeError

    seed_point_in_time_rows(sqlite_url)
    connection = sqlite3.connect(sa.make_url(sqlite_url).database)
    connection.execute(f"UPDATE {table} SET {column} = ? WHERE {key}", (value,))
    connection.execute("UPDATE fraud_labels SET labeled_at = '2026-03-09 00:00:00.000000'")  # known at the cutoff
    connection.commit()
    connection.close()
    with pytest.raises(ValueTypeError, match=rf"{table}\.{column}: 1 value\(s\) cannot be read") as raised:
        extract_sources(sqlite_url, ExtractWindow(ds=DS, window_days=28), tmp_path, (table,))
    assert raised.value.samples == [value]


def test_a_table_read_through_a_drifted_one_names_that_table(warehouse_url, tmp_path):
    from etl.drift import SchemaDriftError

    seed_point_in_time_rows(warehouse_url)
    engine = create_warehouse_engine(warehouse_url)
    with engine.begin() as conn:
        cascade = " CASCADE" if conn.dialect.name == "postgresql" else ""
        for view in sa.inspect(conn).get_view_names():
            conn.execute(sa.text(f"DROP VIEW IF EXISTS {view}{cascade}"))
        conn.execute(sa.text("DROP INDEX ix_reviews_created_at"))
        conn.execute(sa.text("ALTER TABLE reviews DROP COLUMN created_at"))
    engine.dispose()
    # users are read through their activity, reviews included: the driver's "no such column" becomes
    # reviews' schema drift, not a users error that Airflow would retry
    with pytest.raises(SchemaDriftError, match=r"reviews lacks column\(s\) \['created_at'\]") as raised:
        extract_sources(warehouse_url, ExtractWindow(ds=DS, window_days=28), tmp_path, ("users",))
    assert raised.value.table == "reviews"
