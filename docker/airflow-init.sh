#!/usr/bin/env bash
# docker-compose's airflow-init (runs on every `docker compose up`, before the other Airflow services):
#   1. migrate Airflow's metadata database (idempotent);
#   2. set the UI admin's password for the SimpleAuthManager (AIRFLOW_ADMIN_USERNAME / _PASSWORD);
#   3. check that the warehouse connection (shopmtl_warehouse, from AIRFLOW_CONN_SHOPMTL_WAREHOUSE)
#      resolves and answers;
#   4. create the artifacts bucket when missing (SHOPMTL_ARTIFACTS_URL on MinIO or any S3 store);
#   5. seed the demo warehouse when it is empty (SHOPMTL_SEED_DEMO=true; never touches a warehouse
#      that has source rows).
set -euo pipefail

echo "Airflow $(airflow version), executor ${AIRFLOW__CORE__EXECUTOR}"
airflow db migrate

: "${AIRFLOW_ADMIN_USERNAME:?AIRFLOW_ADMIN_USERNAME must be set}"
: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD must be set}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?the passwords file must be configured}"
python - <<'PY'
import json
import os
from pathlib import Path

username = os.environ["AIRFLOW_ADMIN_USERNAME"]
users = dict(entry.split(":")[:2] for entry in os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
if users.get(username) != "admin":
    raise SystemExit(f"{username!r} is not an admin in AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS={users}")
path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
path.parent.mkdir(parents=True, exist_ok=True)
passwords = json.loads(path.read_text() or "{}") if path.exists() else {}
passwords[username] = os.environ["AIRFLOW_ADMIN_PASSWORD"]
tmp = path.with_suffix(".tmp")
tmp.write_text(json.dumps(passwords) + "\n")
tmp.chmod(0o600)
tmp.replace(path)
print(f"UI login: {username} (password from AIRFLOW_ADMIN_PASSWORD) in {path}")
PY

python - <<'PY'
import sqlalchemy as sa

from etl.config import resolve_warehouse_url
from etl.contract import WAREHOUSE_CONN_ID
from etl.warehouse import create_warehouse_engine, mask_url

url = resolve_warehouse_url()
engine = create_warehouse_engine(url)
with engine.connect() as conn:
    conn.execute(sa.text("SELECT 1"))
engine.dispose()
print(f"Airflow connection {WAREHOUSE_CONN_ID!r} -> {mask_url(url)} answers")
PY

python -m etl.artifacts init

if [[ "${SHOPMTL_SEED_DEMO:-false}" == "true" ]]; then
  python "$(dirname "$0")/seed_demo_warehouse.py" \
    --start "${DEMO_START:-2026-01-01}" --end "${DEMO_END:-2026-02-04}" \
    --scale "${DEMO_SCALE:-1}" --seed "${DEMO_SEED:-7}"
else
  echo "SHOPMTL_SEED_DEMO is not true: the warehouse is not seeded"
fi
