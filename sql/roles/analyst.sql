-- Read-only analyst role (PostgreSQL). A template, not runnable as is: `python -m etl.analysts`
-- (etl/analysts.py) fills in {role}, {role_name}, {database}, {schema} and {readable} as quoted
-- identifiers and literals, then runs it in one transaction; `--print` shows the SQL it would run.
--
-- The role may LOGIN and SELECT the analysts' views (sql/views/), the score tables (sql/scores/,
-- model_runs included) and the ops tables data_quality_results and model_registry; nothing else:
-- no writes, no source tables (sql/warehouse/), no truth_* tables. The views that show order or
-- item context read orders/items with their owner's privileges (no security_invoker), so the role
-- sees only the columns those views expose.
--
-- Idempotent: re-run it after a release that adds score tables or views (grants are per object;
-- ALTER DEFAULT PRIVILEGES is not used because it would also grant future source tables).
-- No password here: the operator sets one, e.g. in psql: \password shopmtl_analyst
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {role_name}) THEN
        CREATE ROLE {role} LOGIN;
    END IF;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;
ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA {schema} TO {role};
REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role};
GRANT SELECT ON {readable} TO {role};
