#!/usr/bin/env bash
# Run once by the postgres image (docker-entrypoint-initdb.d) on an empty data volume: two databases,
# each owned by its own login role, so Airflow's metadata and the shopmtl warehouse stay apart.
#   airflow   : Airflow's metadata database (also the Celery result backend), role airflow
#   warehouse : the shopmtl warehouse (sources, scores, ops tables), role shopmtl
# Passwords come from the container's environment (docker-compose.yml passes them from .env).
# Changing them later needs ALTER ROLE (or a fresh postgres-data volume): this runs only once.
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD must be set}"
: "${WAREHOUSE_DB_PASSWORD:?WAREHOUSE_DB_PASSWORD must be set}"

# psql substitutes :'var' as a quoted literal, so passwords never need escaping here.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
  -v airflow_password="$AIRFLOW_DB_PASSWORD" -v warehouse_password="$WAREHOUSE_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
CREATE ROLE shopmtl LOGIN PASSWORD :'warehouse_password';
CREATE DATABASE warehouse OWNER shopmtl;
REVOKE ALL ON DATABASE warehouse FROM PUBLIC;
SQL
