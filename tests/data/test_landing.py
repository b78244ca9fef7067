"""Has day D landed? One indexed probe per required source, on SQLite and PostgreSQL; how long to wait."""
from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
import pytest

from etl.warehouse import TABLE_SCHEMAS, create_tables, create_warehouse_engine, insert_frame, read_frame
from validation.landing import DAY_REQUIRED, NoDataError, check_landing, poke_landing

D = datetime(2026, 3, 10)


def test_a_day_lands_when_every_required_source_has_a_row_on_it(warehouse_url):
    engine = create_warehouse_engine(warehouse_url)
    create_tables(engine, areas=["warehouse"])
    with engine.begin() as conn:
        insert_frame(conn, "clicks", pl.DataFrame([(1, D + timedelta(hours=23), 1, 1, "s", "impression", 1, None)],
                                                  schema=TABLE_SCHEMAS["clicks"], orient="row"))  # fmt: skip
        insert_frame(conn, "orders", pl.DataFrame([(1, 1, D + timedelta(days=1), 5.0, "card", "d", "ip", "web", "DE", "placed")],
                                                  schema=TABLE_SCHEMAS["orders"], orient="row"))  # the next day's: not D's
    engine.dispose()
    assert DAY_REQUIRED == ("clicks", "orders", "reviews")
    landing = check_landing(warehouse_url, D, ["users", "clicks", "orders", "reviews"])
    assert landing.missing == ("orders", "reviews") and not landing.landed
    assert landing.message() == "No data for 2026-03-10 yet: orders, reviews hold no row dated 2026-03-10"
    assert [(o.table, o.expectation, o.critical, o.success) for o in landing.outcomes()] == [
        ("orders", "expect_table_row_count_to_be_between", True, False),
        ("reviews", "expect_table_row_count_to_be_between", True, False),
    ]
    assert check_landing(warehouse_url, D, ["clicks", "items"]).landed  # a deployment without orders or reviews
    # Waiting: until D's end plus the Param, then give up.
    end = D + timedelta(days=1)
    assert not landing.gave_up(end + timedelta(hours=5), timedelta(hours=6))
    assert landing.gave_up(end + timedelta(hours=6), timedelta(hours=6))
    assert landing.gave_up(end, timedelta(0))
    assert not check_landing(warehouse_url, D, ["clicks"]).gave_up(end + timedelta(days=9), timedelta(0))  # landed
    # A scheduled run created late (its DAG unpaused days after D) waits its full time from its start.
    started = end + timedelta(days=3)
    assert not landing.gave_up(started + timedelta(hours=5), timedelta(hours=6), waiting_since=started)
    assert landing.gave_up(started + timedelta(hours=6), timedelta(hours=6), waiting_since=started)


def test_a_missing_table_is_left_to_the_extract_to_name(sqlite_url):
    engine = create_warehouse_engine(sqlite_url)
    create_tables(engine, areas=["ops"])
    engine.dispose()
    assert check_landing(sqlite_url, D, ["clicks", "orders"]).landed


def test_a_poke_that_gives_up_records_why_and_says_no_data(sqlite_url):
    engine = create_warehouse_engine(sqlite_url)
    create_tables(engine, areas=["warehouse"])
    engine.dispose()
    day_end = D + timedelta(days=1)
    waiting = poke_landing(sqlite_url, date(2026, 3, 10), "run-1", ["clicks"], timedelta(hours=6), now=day_end + timedelta(hours=1))
    assert not waiting.landed  # still within the wait: the sensor pokes again later
    with pytest.raises(NoDataError, match=r"No data for 2026-03-10 yet: clicks hold no row dated 2026-03-10, 6 h after the day ended"):
        poke_landing(sqlite_url, date(2026, 3, 10), "run-1", ["clicks"], timedelta(hours=6), now=day_end + timedelta(hours=6))
    engine = create_warehouse_engine(sqlite_url)
    with engine.connect() as conn:
        rows = read_frame(conn, "SELECT table_name, expectation, critical, success FROM data_quality_results WHERE run_id = 'run-1'")
    engine.dispose()
    assert [(t, e, bool(c), bool(s)) for t, e, c, s in rows.rows()] == [("clicks", "expect_table_row_count_to_be_between", True, False)]


@pytest.mark.postgres
def test_a_retyped_day_column_is_left_to_the_extract_to_name_as_drift(postgres_url):
    import sqlalchemy as sa

    engine = create_warehouse_engine(postgres_url)
    create_tables(engine, areas=["warehouse"])
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE orders ALTER COLUMN created_at TYPE TEXT USING created_at::text"))
    engine.dispose()
    # text >= timestamp has no operator: the probe fails, and the extract names the drift instead
    landing = check_landing(postgres_url, D, ["orders", "reviews"])
    assert landing.missing == ("reviews",)


def test_a_dropped_day_column_is_left_to_the_extract_too(sqlite_url):
    import sqlalchemy as sa

    engine = create_warehouse_engine(sqlite_url)
    create_tables(engine, areas=["warehouse"])
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_reviews_created_at"))
        conn.execute(sa.text("ALTER TABLE reviews DROP COLUMN created_at"))
    engine.dispose()
    assert check_landing(sqlite_url, D, ["orders", "reviews"]).missing == ("orders",)


def test_a_source_that_is_a_view_is_probed_like_a_table(sqlite_url):
    import sqlalchemy as sa

    engine = create_warehouse_engine(sqlite_url)
    create_tables(engine, areas=["warehouse"])
    with engine.begin() as conn:  # the platform exposes clicks as a view over its own table
        conn.execute(sa.text("ALTER TABLE clicks RENAME TO raw_clicks"))
        conn.execute(sa.text("CREATE VIEW clicks AS SELECT * FROM raw_clicks"))
    engine.dispose()
    assert check_landing(sqlite_url, D, ["clicks"]).missing == ("clicks",)  # no row on D: waited for, not skipped
