"""The analysts' views (sql/views/), their indexes, and the read-only analyst role (sql/roles/).

Two days of hand-made score rows go in; each view must return exactly the rows worked out below,
on SQLite and on PostgreSQL. The role tests connect as the role itself and check what it may and may
not do, with a role name of their own (roles are cluster-wide) that is dropped afterwards.
"""
from __future__ import annotations

import re
import uuid
from pathlib import Path
from datetime import date, datetime
from decimal import Decimal

import polars as pl
import psycopg.errors
import pytest
import sqlalchemy as sa

from etl.analysts import (
    ANALYST_AREAS, DEFAULT_ROLE, analyst_objects, check_role_name, drop_analyst_role, grant_analyst_role, main,
)
from etl.publish import publish_scores
from etl.warehouse import (
    AREA_REQUIRES, TABLE_SCHEMAS, create_tables, create_view, create_warehouse_engine, insert_frame, read_ddl,
    resolve_areas, view_statement,
)

D1, D2 = date(2026, 2, 3), date(2026, 2, 4)
T = datetime(2026, 2, 4, 23, 0)
VIEWS = [name for name, _ in read_ddl("views")]


def frame(table: str, rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TABLE_SCHEMAS[table], orient="row")


SCORE_USER_ITEM = [  # (ds, user_id, scenario, item_id, p_click, p_purchase, rank, model_version)
    (D1, 1, "search", 10, 0.5, 0.2, 1, "mtl-1"),
    (D1, 1, "search", 11, 0.4, 0.1, 2, "mtl-1"),
    (D1, 2, "home_feed", 10, 0.3, 0.05, 1, "mtl-1"),  # user 2 is not active on D2: D1 is their latest list
    (D2, 1, "search", 13, 0.6, 0.3, 1, "mtl-2"),
    (D2, 1, "search", 12, 0.5, 0.25, 2, "mtl-2"),
    (D2, 3, "any", 11, 0.2, 0.01, 1, "mtl-2"),
]
SCORE_ORDER_FRAUD = [  # (ds, order_id, p_fraud_mtl, p_fraud_lgbm, model_version)
    (D1, 100, 0.9, 0.2, "mtl-1;lgbm-1"),  # flagged by the network only
    (D1, 101, 0.3, 0.4, "mtl-1;lgbm-1"),  # neither
    (D2, 200, 0.6, 0.7, "mtl-2;lgbm-1"),  # both
    (D2, 201, 0.5, 0.51, "mtl-2;lgbm-1"),  # 0.5 is not above the threshold: LightGBM only
    (D2, 202, 0.5, 0.5, "mtl-2;lgbm-1"),  # exactly at the threshold twice: not flagged
    (D2, 203, 0.1, 0.95, "mtl-2;lgbm-1"),  # LightGBM only; no orders row
]
ORDERS = [  # (order_id, user_id, created_at, amount, payment_method, device_id, ip_address, channel, ship_country, status)
    (100, 1, datetime(2026, 2, 3, 10, 0, 0, 250000), 120.5, "card", "dev-a", "10.0.0.1", "web", "DE", "placed"),
    (101, 2, datetime(2026, 2, 3, 11), 15.0, "card", "dev-b", "10.0.0.2", "app", "FR", "placed"),
    (200, 3, datetime(2026, 2, 4, 9, 30), 999.99, "voucher", "dev-c", "10.0.0.3", "web", "NL", "shipped"),
    (201, 1, datetime(2026, 2, 4, 12), 40.0, "card", "dev-a", "10.0.0.1", "app", "DE", "placed"),
    (202, 2, datetime(2026, 2, 4, 13), 41.0, "card", "dev-b", "10.0.0.2", "app", "FR", "placed"),
]
SCORE_ITEM_CATEGORY = [  # (ds, item_id, listed_category, predicted_category, confidence, model_version)
    (D1, 10, "toys", "books", 0.99, "mtl-1"),  # an older day: not in the view
    (D2, 10, "toys", "toys", 0.9, "mtl-2"),  # agrees
    (D2, 11, "toys", "books", 0.8, "mtl-2"),
    (D2, 12, "books", "toys", 0.95, "mtl-2"),
    (D2, 13, "shoes", "bags", 0.8, "mtl-2"),  # ties with 11: item_id decides; no items row
]
ITEMS = [  # (item_id, category, price, seller_id, title, created_at)
    (10, "toys", 9.99, 7, "Robot", datetime(2026, 1, 1)),
    (11, "toys", 19.99, 7, "Puzzle", datetime(2026, 1, 1)),
    (12, "books", 5.0, 8, "Novel", datetime(2026, 1, 1)),
]
MODEL_RUNS = [  # (run_id, ds, model_name, model_version, task, metric, value, created_at, n_rows, scenario)
    ("run-1", D1, "multitask", "mtl-1", "click", "auc", 0.70, T, 100, "all"),
    ("run-1", D1, "multitask", "mtl-1", "fraud", "auc", 0.80, T, 50, "all"),
    ("run-1", D1, "fraud_lgbm", "lgbm-1", "fraud", "auc", 0.82, T, 50, "all"),
    ("run-2", D2, "multitask", "mtl-2", "click", "auc", 0.72, T, 110, "all"),
    ("run-2", D2, "multitask", "mtl-2", "click", "log_loss", 0.30, T, 110, "all"),
    ("run-2", D2, "fraud_lgbm", "lgbm-2", "fraud", "auc", 0.78, T, 55, "all"),
    ("run-2", D2, "fraud_lgbm", "lgbm-x", "fraud", "pr_auc", None, T, 55, "all"),  # not in the registry
]
MODEL_REGISTRY = [  # (model_name, model_version, objective, trained_ds, artifact_path, status, metrics_json, created_at, ...)
    ("multitask", "mtl-1", "click", D1, "/m/1", "challenger", "[]", T, None, None, None, None),
    ("multitask", "mtl-1", "fraud", D1, "/m/1", "challenger", "[]", T, None, None, None, None),
    ("multitask", "mtl-2", "click", D2, "/m/2", "champion", "[]", T, None, "mtl-1", None, None),
    ("fraud_lgbm", "lgbm-1", "fraud", D1, "/l/1", "champion", "[]", T, None, None, None, None),
    ("fraud_lgbm", "lgbm-2", "fraud", D2, "/l/2", "rejected", "[]", T, '["fraud auc worse"]', "lgbm-1", None, None),
]


def publish_two_days(engine: sa.Engine) -> None:
    create_tables(engine, areas=["scores", "views"])  # what etl.publish does
    tables = {
        "score_user_item": SCORE_USER_ITEM, "score_order_fraud": SCORE_ORDER_FRAUD, "orders": ORDERS,
        "score_item_category": SCORE_ITEM_CATEGORY, "items": ITEMS, "model_runs": MODEL_RUNS,
        "model_registry": MODEL_REGISTRY,
    }
    with engine.begin() as conn:
        for table, rows in tables.items():
            insert_frame(conn, table, frame(table, rows))


def plain(value: object) -> object:
    """One representation for both dialects: SQLite returns ISO text for dates and timestamps."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return value if isinstance(value, int) else float(value)
    return value


def select(conn: sa.Connection, query: str) -> list[dict[str, object]]:
    result = conn.execute(sa.text(query))
    return [{key: plain(value) for key, value in row._mapping.items()} for row in result]


def test_latest_recommendations_are_each_users_newest_day(warehouse_url):
    engine = create_warehouse_engine(warehouse_url)
    publish_two_days(engine)
    with engine.connect() as conn:
        rows = select(conn, "SELECT * FROM v_latest_recommendations ORDER BY user_id, rank")
        one_user = select(conn, "SELECT item_id FROM v_latest_recommendations WHERE user_id = 1 ORDER BY rank")
    engine.dispose()
    assert [tuple(row.values()) for row in rows] == [
        ("2026-02-04", 1, "search", 1, 13, 0.6, 0.3, "mtl-2"),
        ("2026-02-04", 1, "search", 2, 12, 0.5, 0.25, "mtl-2"),
        ("2026-02-03", 2, "home_feed", 1, 10, 0.3, 0.05, "mtl-1"),
        ("2026-02-04", 3, "any", 1, 11, 0.2, 0.01, "mtl-2"),
    ]
    assert list(rows[0]) == ["ds", "user_id", "scenario", "rank", "item_id", "p_click", "p_purchase", "model_version"]
    assert one_user == [{"item_id": 13}, {"item_id": 12}]


def test_fraud_review_queue_holds_orders_either_model_puts_above_one_half(warehouse_url):
    engine = create_warehouse_engine(warehouse_url)
    publish_two_days(engine)
    with engine.connect() as conn:
        rows = select(conn, "SELECT * FROM v_fraud_review_queue")
    engine.dispose()
    assert [(r["ds"], r["order_id"], r["p_fraud_max"], r["p_fraud_mtl"], r["p_fraud_lgbm"], r["flagged_by"]) for r in rows] == [
        ("2026-02-04", 203, 0.95, 0.1, 0.95, "fraud_lgbm"),
        ("2026-02-04", 200, 0.7, 0.6, 0.7, "both"),
        ("2026-02-04", 201, 0.51, 0.5, 0.51, "fraud_lgbm"),
        ("2026-02-03", 100, 0.9, 0.9, 0.2, "multitask"),
    ]
    context = {r["order_id"]: (r["user_id"], r["order_created_at"], r["amount"], r["payment_method"], r["channel"],
                               r["ship_country"], r["order_status"], r["model_version"]) for r in rows}
    assert context[100] == (1, "2026-02-03 10:00:00.250000", 120.5, "card", "web", "DE", "placed", "mtl-1;lgbm-1")
    assert context[200] == (3, "2026-02-04 09:30:00.000000", 999.99, "voucher", "web", "NL", "shipped", "mtl-2;lgbm-1")
    assert context[203][:7] == (None,) * 7  # scored, but no orders row: still in the queue
    assert not {"device_id", "ip_address"} & set(rows[0])  # the view does not pass on these


def test_model_performance_shows_every_metric_per_task_and_day_with_registry_status(warehouse_url):
    engine = create_warehouse_engine(warehouse_url)
    publish_two_days(engine)
    with engine.connect() as conn:
        rows = select(conn, "SELECT * FROM v_model_performance")
    engine.dispose()
    assert list(rows[0]) == ["task", "metric", "scenario", "ds", "model_name", "model_version", "value", "n_rows",
                             "status", "trained_ds", "run_id"]
    assert [tuple(row.values()) for row in rows] == [
        ("click", "auc", "all", "2026-02-03", "multitask", "mtl-1", 0.70, 100, "challenger", "2026-02-03", "run-1"),
        ("click", "auc", "all", "2026-02-04", "multitask", "mtl-2", 0.72, 110, "champion", "2026-02-04", "run-2"),
        ("click", "log_loss", "all", "2026-02-04", "multitask", "mtl-2", 0.30, 110, "champion", "2026-02-04", "run-2"),
        ("fraud", "auc", "all", "2026-02-03", "fraud_lgbm", "lgbm-1", 0.82, 50, "champion", "2026-02-03", "run-1"),
        ("fraud", "auc", "all", "2026-02-03", "multitask", "mtl-1", 0.80, 50, "challenger", "2026-02-03", "run-1"),
        ("fraud", "auc", "all", "2026-02-04", "fraud_lgbm", "lgbm-2", 0.78, 55, "rejected", "2026-02-04", "run-2"),
        ("fraud", "pr_auc", "all", "2026-02-04", "fraud_lgbm", "lgbm-x", None, 55, None, None, "run-2"),
    ]


def test_miscategorised_items_are_the_newest_days_disagreements_most_confident_first(warehouse_url):
    engine = create_warehouse_engine(warehouse_url)
    publish_two_days(engine)
    with engine.connect() as conn:
        rows = select(conn, "SELECT * FROM v_miscategorised_items")
    engine.dispose()
    assert [tuple(row.values()) for row in rows] == [
        ("2026-02-04", 12, "books", "toys", 0.95, "Novel", 8, "mtl-2"),
        ("2026-02-04", 11, "toys", "books", 0.8, "Puzzle", 7, "mtl-2"),
        ("2026-02-04", 13, "shoes", "bags", 0.8, None, None, "mtl-2"),
    ]


def test_publishing_creates_the_views(tmp_path, warehouse_url):
    predictions = tmp_path / "mtl" / "predictions"
    predictions.mkdir(parents=True)
    pl.DataFrame({"item_id": [1, 2], "split": ["eval", "eval"], "listed_category": ["toys", "toys"],
                  "predicted_category": ["books", "toys"], "confidence": [0.9, 0.7]}).write_parquet(predictions / "items.parquet")
    multitask = {"model_name": "multitask", "model_version": "mtl-1", "output_dir": str(tmp_path / "mtl"),
                 "metrics": [{"task": "category", "metric": "accuracy", "value": 0.8, "n_rows": 2}]}
    for _ in range(2):  # a re-run of the day
        publish_scores(warehouse_url, D2, "run-1", ["category"], tmp_path / "features", {"multitask": {"category": multitask}}, [multitask])
    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_view_names()) == set(VIEWS)
        assert select(conn, "SELECT item_id, predicted_category FROM v_miscategorised_items") == [
            {"item_id": 1, "predicted_category": "books"}
        ]
        assert select(conn, "SELECT task, metric, value, status FROM v_model_performance") == [
            {"task": "category", "metric": "accuracy", "value": 0.8, "status": None}
        ]
    engine.dispose()


def _schema_state(conn: sa.Connection) -> object:
    """Changes whenever a view is created, replaced, dropped or commented on."""
    if conn.dialect.name == "sqlite":
        return conn.exec_driver_sql("PRAGMA schema_version").scalar()
    return conn.exec_driver_sql(
        "SELECT array_agg(c.oid::text || ':' || r.xmin::text || ':' || d.xmin::text ORDER BY c.oid) FROM pg_class c "
        "JOIN pg_rewrite r ON r.ev_class = c.oid JOIN pg_description d ON d.objoid = c.oid WHERE c.relkind = 'v'"
    ).scalar()


def test_views_are_idempotent_and_follow_a_changed_file(warehouse_url):
    engine = create_warehouse_engine(warehouse_url)
    create_tables(engine)
    with engine.connect() as conn:
        before = _schema_state(conn)
        assert set(sa.inspect(conn).get_view_names()) == set(VIEWS)
    create_tables(engine)
    create_tables(engine, areas=["views"])
    with engine.connect() as conn:
        assert _schema_state(conn) == before  # unchanged files: the views are not touched
    # A view left by an older release, with other columns: replaced by the file's definition.
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP VIEW v_model_performance")
        conn.exec_driver_sql("CREATE VIEW v_model_performance AS SELECT 1 AS old_column")
    create_tables(engine, areas=["views"])
    with engine.connect() as conn:
        columns = [column["name"] for column in sa.inspect(conn).get_columns("v_model_performance")]
    engine.dispose()
    assert columns[:4] == ["task", "metric", "scenario", "ds"]


def test_a_percent_sign_in_a_view_or_its_comment_is_just_text(warehouse_url):
    engine = create_warehouse_engine(warehouse_url)
    text = "-- Share of 100% 'quoted'\nCREATE VIEW v_percent AS SELECT 'a%b' AS x, 7 % 4 AS y;\n"
    for _ in range(2):
        with engine.begin() as conn:
            create_view(conn, "v_percent", text)
    with engine.connect() as conn:
        assert select(conn, "SELECT * FROM v_percent") == [{"x": "a%b", "y": 3}]
    engine.dispose()


def test_every_view_file_creates_its_namesake_from_tables_created_before_it():
    required = {name for area, _ in resolve_areas(["views"]) if area != "views" for name, _ in read_ddl(area)}
    assert {area for area, _ in resolve_areas(["views"])} == {"views", *AREA_REQUIRES["views"]}
    assert [area for area, _ in resolve_areas(["views", "scores"])][-1] == "views"
    for name, text in read_ddl("views"):
        statement = view_statement(name, text)
        read = set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", statement, re.IGNORECASE))
        assert read and read <= required, (name, read - required)
        assert "GREATEST" not in statement.upper() and "LEAST" not in statement.upper()  # not in SQLite
    with pytest.raises(ValueError, match="CREATE VIEW v_other"):
        view_statement("v_other", "CREATE VIEW v_wrong AS SELECT 1")
    with pytest.raises(ValueError, match="unknown DDL areas"):
        resolve_areas(["score"])


def _index_leading_columns(conn: sa.Connection, table: str) -> dict[str, str]:
    """index name -> its first column, primary keys included (PostgreSQL: pg_indexes)."""
    if conn.dialect.name == "sqlite":
        indexes = {}
        for row in conn.exec_driver_sql(f"PRAGMA index_list({table})"):
            first = conn.exec_driver_sql(f"PRAGMA index_info({row[1]})").fetchall()
            indexes[row[1]] = next(info[2] for info in first if info[0] == 0)
        return indexes
    rows = conn.execute(sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"), {"t": table})
    return {name: re.search(r"USING \w+ \((\w+)", definition).group(1) for name, definition in rows}


def test_analysts_filters_are_indexed(warehouse_url):
    engine = create_warehouse_engine(warehouse_url)
    create_tables(engine)
    filters = {"ds", "user_id", "order_id", "item_id", "review_id"}
    with engine.connect() as conn:
        for area in ("scores", "ops"):
            for table, text in read_ddl(area):
                indexes = _index_leading_columns(conn, table)
                named = re.findall(r"CREATE (?:UNIQUE )?INDEX IF NOT EXISTS (\w+)", text)
                assert set(named) <= set(indexes), (table, named, indexes)
                for column in filters & set(TABLE_SCHEMAS[table]):
                    assert column in indexes.values(), f"no index of {table} starts with {column}: {indexes}"
        assert _index_leading_columns(conn, "model_runs")["ix_model_runs_task"] == "task"
    engine.dispose()


# --- the analyst role (PostgreSQL) --------------------------------------------------------------------


@pytest.fixture
def analyst_role(postgres_url):
    role = f"shopmtl_analyst_test_{uuid.uuid4().hex[:10]}"
    try:
        yield role
    finally:
        drop_analyst_role(postgres_url, role)


def as_role(postgres_url: str, role: str) -> sa.Engine:
    return create_warehouse_engine(sa.make_url(postgres_url).set(username=role, password=None).render_as_string(False))


def refused(engine: sa.Engine, statement: str) -> None:
    with engine.connect() as conn, pytest.raises(sa.exc.ProgrammingError) as error:
        conn.exec_driver_sql(statement)
    assert isinstance(error.value.orig, psycopg.errors.InsufficientPrivilege), error.value


def readme_queries() -> list[str]:
    """The README's example queries for analysts, one statement each."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- analyst-queries -->\n```sql\n", 1)[1].split("```", 1)[0]
    return [statement.strip() for statement in block.split(";") if statement.strip()]


def run_analyst_queries(conn: sa.Connection) -> dict[str, int]:
    """Rows each README query and the demo's query return (by their first comment line)."""
    from demo.__main__ import EXAMPLE_QUERY

    rows = {query.splitlines()[0]: len(conn.execute(sa.text(query)).all()) for query in readme_queries()}
    day = D2.isoformat() if conn.dialect.name == "sqlite" else D2
    rows["demo"] = len(conn.execute(sa.text(EXAMPLE_QUERY), {"ds": day}).all())
    return rows


def test_the_readme_and_demo_queries_run_and_find_rows_without_hard_coded_days_or_users(warehouse_url):
    engine = create_warehouse_engine(warehouse_url)
    publish_two_days(engine)
    with engine.connect() as conn:
        rows = run_analyst_queries(conn)
    engine.dispose()
    assert len(rows) == 11 and all(rows[name] > 0 for name in list(rows)[:6] + ["demo"]), rows
    assert rows["-- The 50 listings most likely to be in the wrong category"] == 3


def test_role_names_are_plain_identifiers_and_sqlite_has_no_roles(sqlite_url):
    assert check_role_name(DEFAULT_ROLE) == "shopmtl_analyst"
    for bad in ('x"; DROP ROLE postgres; --', "a$$b", "1abc", "", "a" * 64):
        with pytest.raises(ValueError):
            check_role_name(bad)
    engine = create_warehouse_engine(sqlite_url)
    create_tables(engine, areas=["views"])
    engine.dispose()
    with pytest.raises(ValueError, match="SQLite has no roles"):
        grant_analyst_role(sqlite_url)


@pytest.mark.integration
@pytest.mark.postgres
def test_analyst_role_reads_views_and_scores_and_nothing_else(postgres_url, analyst_role, capsys):
    engine = create_warehouse_engine(postgres_url)
    create_tables(engine)
    publish_two_days(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO truth_orders VALUES (100, 0.9)")
    first = grant_analyst_role(postgres_url, analyst_role)
    assert main(["--warehouse-url", postgres_url, "--role", analyst_role]) == 0  # again, from the CLI
    assert first.missing == [] and sorted(first.granted) == sorted(analyst_objects())
    assert main(["--warehouse-url", postgres_url, "--role", analyst_role, "--print"]) == 0
    assert 'GRANT SELECT ON "public"."model_runs"' in capsys.readouterr().out

    with engine.connect() as conn:
        role = conn.execute(sa.text("SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolpassword IS NULL "
                                    "FROM pg_authid WHERE rolname = :r"), {"r": analyst_role}).one()
        grants = set(conn.execute(sa.text("SELECT table_name, privilege_type FROM information_schema.role_table_grants "
                                          "WHERE grantee = :r"), {"r": analyst_role}).all())
        counts = {name: conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar() for name in analyst_objects()}
    assert tuple(role) == (True, False, False, False, True)  # may log in, nothing more; no password from us
    assert grants == {(name, "SELECT") for name in analyst_objects()}  # exactly these privileges
    assert {name for area in ANALYST_AREAS for name, _ in read_ddl(area)} == set(analyst_objects())

    analyst = as_role(postgres_url, analyst_role)
    try:
        with analyst.connect() as conn:
            for name, expected in counts.items():  # every view and score/ops table
                assert conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar() == expected, name
            # Everything the README and make demo tell an analyst to run works for the role.
            assert run_analyst_queries(conn)["demo"] > 0
            # The queue shows order context although the role may not read orders (owner's rights).
            assert select(conn, "SELECT order_id, user_id FROM v_fraud_review_queue WHERE order_id = 100") == [
                {"order_id": 100, "user_id": 1}
            ]
        refused(analyst, "INSERT INTO score_user_item VALUES ('2026-02-05', 1, 'search', 1, 0.1, 0.1, 1, 'x')")
        refused(analyst, "UPDATE score_order_fraud SET p_fraud_mtl = 0 WHERE order_id = 100")
        refused(analyst, "DELETE FROM model_runs")
        for table in ("orders", "users", "clicks", "items", "truth_orders", "truth_items"):
            refused(analyst, f"SELECT * FROM {table} LIMIT 1")
        refused(analyst, "CREATE TABLE analyst_scratch (x int)")  # PostgreSQL 15+: no CREATE on public
        refused(analyst, "TRUNCATE score_user_item")
    finally:
        analyst.dispose()
        engine.dispose()


@pytest.mark.integration
@pytest.mark.postgres
def test_recreating_views_keeps_the_analysts_grants(postgres_url, analyst_role):
    engine = create_warehouse_engine(postgres_url)
    publish_two_days(engine)
    grant_analyst_role(postgres_url, analyst_role)
    with engine.begin() as conn:
        # A file changed in a compatible way (stale digest): CREATE OR REPLACE, grants kept by PostgreSQL.
        conn.exec_driver_sql("COMMENT ON VIEW v_latest_recommendations IS 'from an older release'")
        # A file changed so that PostgreSQL cannot replace in place: dropped, created, grants restored.
        conn.exec_driver_sql("DROP VIEW v_model_performance")
        conn.exec_driver_sql("CREATE VIEW v_model_performance AS SELECT 1 AS old_column")
        conn.exec_driver_sql(f'GRANT SELECT ON v_model_performance TO "{analyst_role}"')
    for _ in range(2):
        create_tables(engine, areas=["scores", "views"])
    with engine.connect() as conn:
        comment = conn.exec_driver_sql("SELECT obj_description('v_latest_recommendations'::regclass)").scalar()
    assert "shopmtl-ddl-sha256:" in comment and "older release" not in comment
    analyst = as_role(postgres_url, analyst_role)
    try:
        with analyst.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM v_latest_recommendations").scalar() == 4
            assert select(conn, "SELECT task, status FROM v_model_performance WHERE model_version = 'lgbm-2'") == [
                {"task": "fraud", "status": "rejected"}
            ]
    finally:
        analyst.dispose()
        engine.dispose()
