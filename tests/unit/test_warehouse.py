"""The typed schema in code matches the DDL contract, and round trips keep every value."""
from __future__ import annotations

import re
from datetime import date, datetime

import polars as pl
import pytest

from etl.config import connection_to_url
from etl.warehouse import (
    DDL_AREAS, SQL_DIR, TABLE_AREAS, TABLE_SCHEMAS, create_tables, create_warehouse_engine, insert_frame, mask_url, read_ddl,
    read_frame, replace_rows, split_sql,
)


def ddl_columns(text: str) -> list[str]:
    body = text[text.index("(") + 1 : text.rindex(")")]
    return [m.group(1) for m in re.finditer(r"^\s+([a-z_]+)\s+[A-Z]", body, re.MULTILINE) if m.group(1) != "PRIMARY"]


def test_every_ddl_table_has_the_same_columns_in_code():
    tables = {name: text for area in TABLE_AREAS for name, text in read_ddl(area)}
    assert set(tables) == set(TABLE_SCHEMAS)
    for name, text in tables.items():
        assert ddl_columns(split_sql(text)[0]) == list(TABLE_SCHEMAS[name]), name


def test_only_ddl_areas_are_run_as_ddl():
    # sql/extract holds the extract queries (etl.extract), sql/roles the analyst role (etl.analysts): not DDL areas.
    assert {"extract", "roles"}.isdisjoint(DDL_AREAS)
    assert set(DDL_AREAS) <= {path.name for path in SQL_DIR.iterdir() if path.is_dir()}


def test_round_trip_keeps_types_and_values_and_replace_is_idempotent(warehouse_url):
    engine = create_warehouse_engine(warehouse_url)
    create_tables(engine)
    create_tables(engine)  # DDL is idempotent
    frame = pl.DataFrame(
        [(date(2026, 1, 2), 1, "search", 7, 0.25, 0.01, 1, "v1"), (date(2026, 1, 2), 1, "search", 8, 0.2, 0.02, 2, "v1")],
        schema=TABLE_SCHEMAS["score_user_item"], orient="row",
    )
    for _ in range(2):
        with engine.begin() as conn:
            replace_rows(conn, "score_user_item", frame, "ds = :ds", {"ds": "2026-01-02" if conn.dialect.name == "sqlite" else date(2026, 1, 2)})
    with engine.connect() as conn:
        back = read_frame(conn, "SELECT * FROM score_user_item ORDER BY rank", table="score_user_item")
    assert back.equals(frame)
    users = pl.DataFrame([(1, datetime(2026, 1, 1, 3, 4, 5, 123456), "DE", None)], schema=TABLE_SCHEMAS["users"], orient="row")
    with engine.begin() as conn:
        insert_frame(conn, "users", users)
    with engine.connect() as conn:
        assert read_frame(conn, "SELECT * FROM users", table="users").equals(users)
    engine.dispose()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (("postgres", "db.internal", "etl", "s3cret", 5433, "warehouse"), "postgresql+psycopg://etl:s3cret@db.internal:5433/warehouse"),
        (("postgresql+psycopg", "h", "u", None, None, "w"), "postgresql+psycopg://u@h/w"),
        (("sqlite", None, None, None, None, "/data/warehouse.db"), "sqlite:////data/warehouse.db"),
    ],
)
def test_airflow_connection_fields_become_sqlalchemy_urls(fields, expected):
    assert connection_to_url(*fields) == expected


def test_masked_urls_hide_passwords():
    assert "s3cret" not in mask_url("postgresql://etl:s3cret@db/warehouse")


def test_a_table_of_ours_from_an_older_release_is_named_not_written_into(warehouse_url):
    from etl.warehouse import OutdatedTableError

    engine = create_warehouse_engine(warehouse_url)
    with engine.begin() as conn:  # model_runs as an earlier release created it: no scenario column
        conn.exec_driver_sql(
            "CREATE TABLE model_runs (run_id TEXT NOT NULL, ds DATE NOT NULL, model_name TEXT NOT NULL, "
            "model_version TEXT NOT NULL, task TEXT NOT NULL, metric TEXT NOT NULL, value DOUBLE PRECISION NULL, "
            "created_at TIMESTAMP NOT NULL, n_rows BIGINT NULL, PRIMARY KEY (ds, model_name, task, metric))"
        )
    with pytest.raises(OutdatedTableError, match=r"model_runs .* lacks the columns \['scenario'\] .* sql/scores/model_runs.sql"):
        create_tables(engine, areas=["scores"])
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE model_runs RENAME TO model_runs_old")
    create_tables(engine, areas=["scores"])  # what the message says to do
    engine.dispose()
