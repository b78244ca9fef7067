"""The read-only analyst role of a PostgreSQL warehouse (``sql/roles/analyst.sql``).

    python -m etl.analysts --warehouse-url postgresql://owner@db/warehouse [--role shopmtl_analyst]
    python -m etl.analysts --warehouse-url ... --print     # show the SQL, run nothing
    python -m etl.analysts --warehouse-url ... --drop      # remove the role from this database

Run it as a user that may create roles and grant on the warehouse objects (their owner with
CREATEROLE, or a superuser), after the first publish has created the score tables and views, and
again after a release that adds tables or views; it is idempotent. It creates no tables: objects
that do not exist yet are reported and left out. The role gets no password: set one with psql's
``\\password shopmtl_analyst`` (or ALTER ROLE ... PASSWORD), then analysts connect as
``postgresql://shopmtl_analyst@host/warehouse``.

Roles belong to the whole PostgreSQL cluster, grants to one database: a role name is a parameter so
tests (and a second warehouse on the same server) can use their own.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.warehouse import SQL_DIR, create_warehouse_engine, execute_sql, is_sqlite, mask_url, read_ddl

log = logging.getLogger(__name__)

DEFAULT_ROLE = "shopmtl_analyst"
ROLE_SQL = SQL_DIR / "roles" / "analyst.sql"
# What analysts may SELECT: every table or view defined in these DDL areas. Never "warehouse" (the
# source tables) or "truth" (the generator's answers).
ANALYST_AREAS = ("scores", "ops", "views")
# Plain names only: the name also appears inside the DO block's dollar-quoted body.
ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True)
class AnalystGrant:
    role: str
    database: str
    schema: str
    granted: list[str]  # objects the role may SELECT
    missing: list[str]  # analyst objects that do not exist yet (not granted)


def analyst_objects() -> list[str]:
    """The tables and views analysts may read, from the DDL files of ``ANALYST_AREAS``."""
    return [name for area in ANALYST_AREAS for name, _ in read_ddl(area)]


def check_role_name(role: str) -> str:
    if not ROLE_NAME.fullmatch(role):
        raise ValueError(f"role name {role!r}: use letters, digits and _ (at most 63, not starting with a digit)")
    return role


def _require_postgres(conn: Connection) -> None:
    if is_sqlite(conn):
        raise ValueError(
            "SQLite has no roles: give analysts a read-only copy or open the file read-only "
            "(sqlite3 'file:warehouse.db?mode=ro')"
        )


def render_role_sql(conn: Connection, role: str = DEFAULT_ROLE) -> tuple[str, AnalystGrant]:
    """``sql/roles/analyst.sql`` for ``role`` in this connection's database and schema, quoted safely."""
    from psycopg import sql

    _require_postgres(conn)
    check_role_name(role)
    database, schema = conn.execute(sa.text("SELECT current_database(), current_schema()")).one()
    present = {
        name
        for (name,) in conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relkind IN ('r', 'v', 'p', 'm')"
            ),
            {"schema": schema},
        )
    }
    wanted = analyst_objects()
    granted = [name for name in wanted if name in present]
    missing = [name for name in wanted if name not in present]
    if not granted:
        raise RuntimeError(
            f"none of the analysts' tables and views exist in {database}.{schema} yet: publish a day first"
        )
    # Whole-line comments go: they name the placeholders and would be filled in too.
    template = "\n".join(line for line in ROLE_SQL.read_text().splitlines() if not line.lstrip().startswith("--"))
    rendered = sql.SQL(template).format(
        role=sql.Identifier(role),
        role_name=sql.Literal(role),
        database=sql.Identifier(database),
        schema=sql.Identifier(schema),
        readable=sql.SQL(", ").join(sql.Identifier(schema, name) for name in granted),
    )
    text = rendered.as_string(conn.connection.driver_connection).strip() + "\n"
    return text, AnalystGrant(role=role, database=database, schema=schema, granted=granted, missing=missing)


def grant_analyst_role(warehouse_url: str, role: str = DEFAULT_ROLE) -> AnalystGrant:
    """Create ``role`` if missing and make its privileges exactly SELECT on the analysts' objects."""
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.begin() as conn:
            text, grant = render_role_sql(conn, role)
            execute_sql(conn, text)  # several statements, sent as they are
    finally:
        engine.dispose()
    log.info("%s may SELECT %s in %s", role, ", ".join(grant.granted), mask_url(warehouse_url))
    if grant.missing:
        log.warning("Not granted yet (they do not exist; run this again after publishing): %s", ", ".join(grant.missing))
    return grant


def drop_analyst_role(warehouse_url: str, role: str = DEFAULT_ROLE) -> bool:
    """Revoke ``role``'s grants in this database and drop it; False if it did not exist.

    DROP ROLE fails while the role still holds grants in another database of the cluster: run this
    there first.
    """
    from psycopg import sql

    check_role_name(role)
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.begin() as conn:
            _require_postgres(conn)
            if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}).first() is None:
                return False
            driver = conn.connection.driver_connection
            for statement in ("REASSIGN OWNED BY {} TO CURRENT_USER", "DROP OWNED BY {}", "DROP ROLE {}"):
                execute_sql(conn, sql.SQL(statement).format(sql.Identifier(role)).as_string(driver))
    finally:
        engine.dispose()
    log.info("Dropped role %s (grants in %s revoked)", role, mask_url(warehouse_url))
    return True


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(
        prog="python -m etl.analysts", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warehouse-url", required=True, help="PostgreSQL URL of the warehouse (postgresql://...)")
    parser.add_argument("--role", default=DEFAULT_ROLE, help=f"role name (default {DEFAULT_ROLE})")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--print", action="store_true", help="print the SQL that would run, run nothing")
    action.add_argument("--drop", action="store_true", help="revoke the role's grants here and drop it")
    args = parser.parse_args(argv)
    try:
        if args.drop:
            print(f"dropped {args.role}" if drop_analyst_role(args.warehouse_url, args.role) else f"no role {args.role}")
        elif args.print:
            engine = create_warehouse_engine(args.warehouse_url)
            try:
                with engine.connect() as conn:
                    text, grant = render_role_sql(conn, args.role)
            finally:
                engine.dispose()
            print(text, end="")
            if grant.missing:
                print(f"-- not granted (missing): {', '.join(grant.missing)}")
        else:
            grant = grant_analyst_role(args.warehouse_url, args.role)
            print(f"{grant.role} may SELECT in {grant.database}.{grant.schema}: {', '.join(grant.granted)}")
            if grant.missing:
                print(f"not granted yet (missing, re-run after publishing): {', '.join(grant.missing)}")
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
