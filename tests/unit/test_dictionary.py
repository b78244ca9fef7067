"""The data dictionary and the catalogue comments come from sql/: every column of every source, score
and ops table has a meaning, PostgreSQL's catalogue carries it, and docs/data_dictionary.md is current."""
from __future__ import annotations

import pytest

from etl.comments import apply_comments, catalogue_comments, parse_comment
from etl.dictionary import DESCRIBED_AREAS, main, read_tables
from etl.warehouse import TABLE_SCHEMAS, create_tables, create_warehouse_engine, read_ddl, split_sql


def test_the_committed_dictionary_is_what_sql_says(capsys):
    assert main(["--check"]) == 0, "docs/data_dictionary.md is stale: run python -m etl.dictionary"


def test_every_column_of_every_source_score_and_ops_table_has_a_meaning():
    tables = read_tables()
    assert {table.name for table in tables} == {name for area in DESCRIBED_AREAS for name, _ in read_ddl(area)}
    for table in tables:
        assert table.meaning, f"{table.name} has no COMMENT ON TABLE"
        assert [column.name for column in table.columns] == list(TABLE_SCHEMAS[table.name]), table.name
        assert all(column.meaning for column in table.columns), [c.name for c in table.columns if not c.meaning]
        assert table.written_by, table.name
    readers = {table.name: table.read_by_views for table in tables}
    assert "v_fraud_review_queue" in readers["score_order_fraud"] and "v_fraud_review_queue" in readers["orders"]


def test_a_comment_names_only_its_own_table_and_existing_columns():
    for area in DESCRIBED_AREAS:
        for name, text in read_ddl(area):
            for comment in filter(None, map(parse_comment, split_sql(text))):
                assert comment.table == name and (comment.column is None or comment.column in TABLE_SCHEMAS[name])
    with pytest.raises(ValueError, match="unexpected form"):
        parse_comment("COMMENT ON COLUMN a.b IS 'x' || 'y'")


@pytest.mark.postgres
def test_postgres_catalogue_carries_every_comment_and_a_second_run_rewrites_none(postgres_url):
    engine = create_warehouse_engine(postgres_url)
    create_tables(engine)
    with engine.begin() as conn:
        for table in read_tables():
            catalogue = catalogue_comments(conn, table.name)
            assert catalogue[None] == table.meaning
            assert {column.name: catalogue[column.name] for column in table.columns} == {c.name: c.meaning for c in table.columns}
        statements = [statement for area in DESCRIBED_AREAS for _, text in read_ddl(area) for statement in split_sql(text)]
        assert apply_comments(conn, statements) == 0  # nothing differs: the catalogue is not rewritten
        conn.exec_driver_sql("COMMENT ON COLUMN orders.amount IS 'stale'")
        assert apply_comments(conn, statements) == 1
        assert catalogue_comments(conn, "orders")["amount"].startswith("The order total")
    engine.dispose()


def test_sqlite_tables_are_created_without_comments(sqlite_url):
    engine = create_warehouse_engine(sqlite_url)
    create_tables(engine)
    with engine.connect() as conn:
        assert apply_comments(conn, ["COMMENT ON TABLE orders IS 'x'"]) == 0
    engine.dispose()
