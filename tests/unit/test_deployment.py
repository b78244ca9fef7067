"""docker-compose.yml and the Dockerfile (which cannot run here) are valid and agree with the code.

Validators: the compose-spec JSON schema that docker-compose 1.29.2 validates with (vendored in
``compose_spec/``, see its NOTICE) always; the ``docker-compose`` 1.29.2 CLI itself (``config -q``:
schema, interpolation, profiles, device reservations, depends_on conditions) when installed. ``.ci/run``
installs it and sets ``SHOPMTL_REQUIRE_COMPOSE=1``; with that (or ``CI=true``) a missing CLI fails.
The init service's scripts run for real in tests/unit/test_init_service.py.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import sqlalchemy as sa
import yaml

from etl.contract import WAREHOUSE_CONN_ID

REPO_DIR = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_DIR / "docker-compose.yml"
SCHEMA_FILE = Path(__file__).with_name("compose_spec") / "compose_spec.json"

AIRFLOW_SERVICES = {
    "airflow-init": None,
    "airflow-apiserver": ["airflow", "api-server"],
    "airflow-scheduler": ["airflow", "scheduler"],
    "airflow-dag-processor": ["airflow", "dag-processor"],
    "airflow-triggerer": ["airflow", "triggerer"],
    "airflow-worker": ["airflow", "celery", "worker"],
    "airflow-worker-gpu": ["airflow", "celery", "worker", "--queues", "gpu", "--concurrency", "2"],
}
# Variables only the init service needs (admin password, demo seeding); everything else is shared.
INIT_ONLY_ENV = {"AIRFLOW_ADMIN_USERNAME", "AIRFLOW_ADMIN_PASSWORD", "SHOPMTL_SEED_DEMO", "DEMO_START", "DEMO_END", "DEMO_SCALE", "DEMO_SEED"}
WAREHOUSE_CONN_VAR = f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"

_VARIABLE = re.compile(r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value, env: dict[str, str]):
    """Compose's variable substitution (``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``$$``)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("plain")
        op, default = match.group("op"), match.group("default") or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        if op in (":?", "?"):
            if not env.get(name):
                raise KeyError(f"{name} is required: {default}")
            return env[name]
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose(env: dict[str, str] | None = None) -> dict:
    """The compose file as ``docker compose`` sees it with only ``env`` set (defaults otherwise)."""
    return interpolate(raw_compose(), env or {})


def dockerfile() -> str:
    return (REPO_DIR / "Dockerfile").read_text()


def dockerfile_env() -> dict[str, str]:
    """ENV assignments of the Dockerfile (``ENV A=1 \\ B=2`` form)."""
    text = dockerfile().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in line[4:].split())
    return env


def image_workdir() -> str:
    return re.findall(r"^WORKDIR (\S+)", dockerfile(), re.MULTILINE)[-1]


def env_vars_the_code_reads() -> set[str]:
    names = set()
    for folder in ("etl", "training", "validation", "dags"):
        for path in (REPO_DIR / folder).rglob("*.py"):
            text = path.read_text()
            names |= set(re.findall(r"os\.environ\.get\(\s*[\"'](\w+)[\"']", text))
            names |= set(re.findall(r"os\.environ\[\s*[\"'](\w+)[\"']\s*\]", text))
            names |= set(re.findall(r"os\.getenv\(\s*[\"'](\w+)[\"']", text))
    return names


def worker_queues(command: list[str]) -> list[str]:
    """The queues ``airflow celery worker`` consumes: ``--queues``/``-q`` or Airflow's default queue."""
    for flag in ("--queues", "-q"):
        if flag in command:
            return command[command.index(flag) + 1].split(",")
    return ["default"]  # [operators] default_queue, which the worker and the tasks both default to


# --- validators -----------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec_schema():
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft4Validator(schema)  # as docker-compose 1.29.2 does
    for label, document in (("raw", raw_compose()), ("defaults", compose()), ("gpu", compose({"SHOPMTL_TRAINING_QUEUE": "gpu"}))):
        errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]
        assert not errors, f"{label}: {errors}"


def test_the_schema_rejects_a_broken_file():
    """The vendored schema really checks what the deployment relies on (not a permissive stub)."""
    validator = jsonschema.Draft4Validator(json.loads(SCHEMA_FILE.read_text()))
    broken = compose()
    broken["services"]["airflow-scheduler"]["depends_on"]["airflow-init"]["condition"] = "service_done"
    broken["services"]["airflow-worker-gpu"]["profiles"] = "gpu"
    broken["services"]["redis"]["helthcheck"] = {}
    assert len(list(validator.iter_errors(broken))) >= 3


def _docker_compose() -> str:
    executable = shutil.which("docker-compose")
    if executable is None:
        reason = "the docker-compose CLI is not installed (.ci/run installs Debian's docker-compose 1.29.2)"
        if os.environ.get("SHOPMTL_REQUIRE_COMPOSE") == "1" or os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return executable


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="defaults"),
        pytest.param(["--env-file", str(REPO_DIR / ".env.example")], id="env-example"),
        pytest.param(["--profile", "gpu"], id="gpu-profile"),
    ],
)
def test_docker_compose_accepts_the_file(args: list[str], tmp_path: Path):
    executable = _docker_compose()
    if "--env-file" not in args:  # only the file's defaults, whatever .env a developer has
        (tmp_path / "empty.env").write_text("")
        args = ["--env-file", str(tmp_path / "empty.env"), *args]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SHOPMTL_", "AIRFLOW", "COMPOSE_"))}
    result = subprocess.run(
        [executable, "-f", str(COMPOSE_FILE), *args, "config"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr  # e.g. an unset variable without a default
    resolved = yaml.safe_load(result.stdout)
    assert set(AIRFLOW_SERVICES) | {"postgres", "redis"} <= set(resolved["services"])
    gpu = resolved["services"]["airflow-worker-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


# --- services and their wiring --------------------------------------------------------------------


def test_every_service_is_defined_with_its_airflow_command():
    services = compose()["services"]
    assert set(services) == set(AIRFLOW_SERVICES) | {"postgres", "redis", "minio"}
    for name, command in AIRFLOW_SERVICES.items():
        assert services[name]["image"].startswith("shopmtl:"), name
        assert "build" in services[name], name
        if command is not None:
            assert services[name]["command"] == command, name
    assert services["airflow-init"]["command"] == [f"{image_workdir()}/docker/airflow-init.sh"]
    assert services["airflow-apiserver"]["ports"] == ["8080:8080"]


def test_every_airflow_service_shares_one_environment():
    services = compose()["services"]
    shared = services["airflow-scheduler"]["environment"]
    for name in AIRFLOW_SERVICES:
        environment = services[name]["environment"]
        extra = set(environment) - set(shared)
        assert extra <= (INIT_ONLY_ENV if name == "airflow-init" else set()), (name, extra)
        assert {key: environment.get(key) for key in shared} == shared, name

    assert shared["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    broker = sa.make_url(shared["AIRFLOW__CELERY__BROKER_URL"])
    assert (broker.drivername, broker.host, broker.port) == ("redis", "redis", 6379)
    assert broker.password == services["redis"]["environment"]["REDIS_PASSWORD"]
    metadata = sa.make_url(shared["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    backend = shared["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert backend.startswith("db+")
    assert sa.make_url(backend.removeprefix("db+")) == metadata  # results in the Airflow metadata DB
    assert (metadata.drivername, metadata.host, metadata.database) == ("postgresql+psycopg", "postgres", "airflow")
    # Airflow 3's async engine: psycopg 3's async dialect (the derived default would need asyncpg).
    metadata_async = sa.make_url(shared["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"])
    assert metadata_async.drivername == "postgresql+psycopg_async"
    assert metadata_async.set(drivername=metadata.drivername) == metadata
    assert shared["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    # Secrets every component must share (Airflow would generate one per container otherwise).
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
        assert key in shared
    assert shared["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"


def test_dags_folder_is_where_the_image_copies_the_dags():
    shared = compose()["services"]["airflow-scheduler"]["environment"]
    assert re.search(r"^COPY dags \./dags$", dockerfile(), re.MULTILINE)
    expected = f"{image_workdir()}/dags"
    assert shared["AIRFLOW__CORE__DAGS_FOLDER"] == expected
    assert dockerfile_env()["AIRFLOW__CORE__DAGS_FOLDER"] == expected


def test_airflow_metadata_and_warehouse_are_separate_databases():
    services = compose()["services"]
    shared = services["airflow-scheduler"]["environment"]
    warehouse = sa.make_url(shared[WAREHOUSE_CONN_VAR])
    metadata = sa.make_url(shared["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert (warehouse.host, warehouse.port, metadata.port) == ("postgres", 5432, 5432)
    assert warehouse.database != metadata.database
    assert warehouse.username != metadata.username

    postgres = services["postgres"]
    init_script = REPO_DIR / "docker" / "init-databases.sh"
    assert f"./docker/{init_script.name}:/docker-entrypoint-initdb.d/10-{init_script.name}:ro" in postgres["volumes"]
    sql = init_script.read_text()
    for url, password_var in ((metadata, "AIRFLOW_DB_PASSWORD"), (warehouse, "WAREHOUSE_DB_PASSWORD")):
        assert f"CREATE ROLE {url.username} LOGIN PASSWORD" in sql
        assert f"CREATE DATABASE {url.database} OWNER {url.username};" in sql
        assert postgres["environment"][password_var] == url.password  # the role gets the URL's password
    assert init_script.stat().st_mode & stat.S_IXUSR
    assert subprocess.run(["bash", "-n", str(init_script)]).returncode == 0


def test_warehouse_connection_resolves_to_the_compose_warehouse(tmp_path: Path):
    """AIRFLOW_CONN_<WAREHOUSE_CONN_ID> defines the connection the tasks look up, as Airflow parses it."""
    shared = compose({"WAREHOUSE_DB_PASSWORD": "p4ss"})["services"]["airflow-worker"]["environment"]
    assert shared[WAREHOUSE_CONN_VAR] == "postgresql://shopmtl:p4ss@postgres:5432/warehouse"
    env = {**os.environ, WAREHOUSE_CONN_VAR: shared[WAREHOUSE_CONN_VAR]}
    code = "from etl.config import resolve_warehouse_url; print(resolve_warehouse_url())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "postgresql+psycopg://shopmtl:p4ss@postgres:5432/warehouse"


def test_workers_share_only_postgres_redis_and_the_object_store():
    config = compose()
    services = config["services"]
    home = dockerfile_env()["SHOPMTL_HOME"]
    shared = services["airflow-scheduler"]["environment"]
    assert shared["SHOPMTL_HOME"] == home  # each container's local working copy, the same path everywhere
    assert shared["SHOPMTL_ARTIFACTS_URL"].startswith("s3://")
    for name in AIRFLOW_SERVICES:
        mounts = {volume.split(":")[1] for volume in services[name].get("volumes", [])}
        assert home not in mounts, f"{name} mounts a volume on SHOPMTL_HOME: run artifacts must go through the store"
        assert mounts <= {"/opt/airflow/logs", "/opt/airflow/auth"}, (name, mounts)
        assert services[name]["depends_on"]["minio"] == {"condition": "service_healthy"}, name
    assert "shopmtl-home" not in config["volumes"]
    # The store's endpoint is the MinIO service, and the key pair the workers use is MinIO's login.
    minio = services["minio"]
    assert shared["AWS_ENDPOINT_URL"] == "http://minio:9000" and "9000" in minio["expose"]  # MinIO's S3 API port
    assert (minio["environment"]["MINIO_ROOT_USER"], minio["environment"]["MINIO_ROOT_PASSWORD"]) == (
        shared["AWS_ACCESS_KEY_ID"], shared["AWS_SECRET_ACCESS_KEY"]
    )
    assert any(volume.endswith(":/data") and volume.split(":")[0] in config["volumes"] for volume in minio["volumes"])
    assert "python -m etl.artifacts init" in (REPO_DIR / "docker" / "airflow-init.sh").read_text()  # creates the bucket
    assert 'mkdir -p "$AIRFLOW_HOME/logs" "$AIRFLOW_HOME/auth" "$SHOPMTL_HOME"' in dockerfile()
    assert 'chown -R airflow:0 "$AIRFLOW_HOME" "$SHOPMTL_HOME"' in dockerfile()


# Read by load_settings() but used only by `make bench` on a developer's checkout: no service needs it.
DEV_ONLY_ENV = {"SHOPMTL_BENCH_POSTGRES_URL"}
# Set by torchrun for each training process it starts (training/distributed.py), never by a deployment.
TORCHRUN_ENV = {"LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}


def test_every_variable_the_code_reads_is_set_for_every_airflow_service():
    names = env_vars_the_code_reads() - DEV_ONLY_ENV - TORCHRUN_ENV
    assert {"SHOPMTL_HOME", "SHOPMTL_SOURCES", "SHOPMTL_TRAINING_QUEUE"} <= names
    services = raw_compose()["services"]
    for name in AIRFLOW_SERVICES:
        assert names <= set(services[name]["environment"]), (name, names - set(services[name]["environment"]))


def test_defaults_keep_training_on_the_default_queue_and_all_sources():
    shared = compose()["services"]["airflow-scheduler"]["environment"]
    assert shared["SHOPMTL_TRAINING_QUEUE"] == ""  # load_settings(): "" -> None -> no queue= override
    assert shared["SHOPMTL_SOURCES"] == ""  # parse_sources(""): all sources
    assert compose({"SHOPMTL_TRAINING_QUEUE": "gpu"})["services"]["airflow-dag-processor"]["environment"]["SHOPMTL_TRAINING_QUEUE"] == "gpu"


def test_gpu_worker_reserves_an_nvidia_gpu_and_listens_on_the_gpu_queue():
    services = compose()["services"]
    gpu = services["airflow-worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert [(device["driver"], device["capabilities"]) for device in devices] == [("nvidia", ["gpu"])]
    assert worker_queues(gpu["command"]) == ["gpu"]
    assert gpu["image"] != services["airflow-worker"]["image"]
    assert "/whl/cu" in gpu["build"]["args"]["TORCH_INDEX_URL"]  # a CUDA build of torch
    # Without the profile everything else runs, on the default queue.
    assert worker_queues(services["airflow-worker"]["command"]) == ["default"]
    assert [name for name, service in services.items() if "profiles" in service] == ["airflow-worker-gpu"]
    assert "container_name" not in services["airflow-worker"]  # `--scale airflow-worker=N` needs this
    assert "ports" not in services["airflow-worker"]


PARSE_DAG = """
import json, os, sys
from airflow.dag_processing.dagbag import DagBag

result = {}
for queue in sys.argv[1:]:
    os.environ["SHOPMTL_TRAINING_QUEUE"] = queue
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    assert not bag.import_errors, bag.import_errors
    result[queue] = {task.task_id: task.queue for task in bag.dags["nightly_retrain"].tasks}
print(json.dumps(result))
"""


def test_the_dag_parsed_with_the_gpu_setting_routes_training_to_the_gpu_worker(tmp_path: Path):
    gpu_env = compose({"SHOPMTL_TRAINING_QUEUE": "gpu"})["services"]["airflow-dag-processor"]["environment"]
    default_env = compose()["services"]["airflow-dag-processor"]["environment"]
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_DIR / "dags"), "SHOPMTL_HOME": str(tmp_path)}
    queues = [gpu_env["SHOPMTL_TRAINING_QUEUE"], default_env["SHOPMTL_TRAINING_QUEUE"]]
    result = subprocess.run(
        [sys.executable, "-c", PARSE_DAG, *queues], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    services = compose()["services"]
    gpu_queues = worker_queues(services["airflow-worker-gpu"]["command"])
    default_queues = worker_queues(services["airflow-worker"]["command"])

    with_gpu = parsed["gpu"]
    assert with_gpu["train_multitask"] == with_gpu["train_fraud_baseline"] == "gpu"
    assert with_gpu["train_multitask"] in gpu_queues
    assert {queue for task, queue in with_gpu.items() if not task.startswith("train_")} <= set(default_queues)
    assert set(parsed[""].values()) <= set(default_queues)  # defaults: nothing waits on the gpu queue


def test_healthchecks_and_start_order_follow_the_reference_compose_file():
    services = compose()["services"]
    for name, service in services.items():
        if name != "airflow-init":
            assert "healthcheck" in service, name
            assert service["restart"] == "unless-stopped", name
    assert services["airflow-init"]["restart"] == "no"
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"] == depends["redis"] == {"condition": "service_healthy"}, name
        if name != "airflow-init":
            assert depends["airflow-init"] == {"condition": "service_completed_successfully"}, name
    for name in ("airflow-worker", "airflow-worker-gpu"):
        assert services[name]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}
    # The scheduler's health endpoint is served only when enabled.
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
    assert "curl" in dockerfile()  # the api-server and scheduler healthchecks call curl


SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET")


def test_secrets_come_from_the_environment_with_marked_dev_defaults():
    raw = COMPOSE_FILE.read_text()
    # Every secret is a ${VAR...} reference; its default, if any, says it is a development value.
    secret_refs = re.findall(r"\$\{(\w*(?:PASSWORD|SECRET|FERNET)\w*)(?::-([^}]*))?\}", raw)
    assert secret_refs
    for name, default in secret_refs:
        if name == "AIRFLOW_ADMIN_PASSWORD":
            assert default == "admin"  # the documented demo login admin / admin
        else:
            assert default == "" or default.startswith("dev-"), (name, default)
    documented = set(re.findall(r"^(\w+)=", (REPO_DIR / ".env.example").read_text(), re.MULTILINE))
    assert {name for name, _ in secret_refs} <= documented
    # No literal secret: environment values named like secrets, and URL passwords, are references.
    for service in raw_compose()["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                assert re.fullmatch(r"\$\{\w+(:-[^}]*)?\}", str(value)), (key, value)
            for password in re.findall(r"://[^:/@]*:([^@]*)@", str(value)):
                assert re.fullmatch(r"\$\{\w+(:-[^}]*)?\}", password), (key, value)
    assert not (REPO_DIR / ".env").exists() or ".env" in (REPO_DIR / ".dockerignore").read_text()


# --- the image -----------------------------------------------------------------------------------


def test_image_installs_the_project_with_the_celery_extra():
    text = dockerfile()
    assert "-c requirements.lock -e '.[celery]'" in text
    pyproject = (REPO_DIR / "pyproject.toml").read_text()
    assert re.search(r'^celery = \[.*"apache-airflow-providers-celery==', pyproject, re.MULTILINE)
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", text, re.MULTILINE)
    assert text.count('--extra-index-url "${TORCH_INDEX_URL}"') == 2
    assert re.search(r"^FROM python:3\.11", text, re.MULTILINE)
    assert "USER airflow" in text


# Developer tools the image leaves out: `make bench` seeds its own databases and runs the DAG from a
# checkout; no service imports it, so shipping it would only grow the image.
DEV_ONLY_PACKAGES = {"bench", "local"}  # local: `make airflow`, Airflow from .venv without Docker


def test_image_copies_every_package_and_everything_the_services_run():
    from setuptools import find_packages

    text = dockerfile()
    include = re.search(r"include = \[(.*)\]", (REPO_DIR / "pyproject.toml").read_text()).group(1)
    patterns = re.findall(r'"([^"]+)"', include)
    top_level = {package.split(".")[0] for package in find_packages(str(REPO_DIR), include=patterns)} - DEV_ONLY_PACKAGES
    assert {"etl", "training", "validation"} <= top_level
    # Packages, the DDL (read at run time), the DAGs and the init scripts.
    for folder in sorted(top_level | {"sql", "dags", "docker"}):
        assert f"COPY {folder} ./{folder}" in text, folder
    # Every top-level source folder ships (except the tests), so a new package cannot be forgotten.
    for path in REPO_DIR.iterdir():
        if path.is_dir() and not path.name.startswith((".", "_")) and path.name not in {"tests", "build", *DEV_ONLY_PACKAGES} and not path.name.endswith(".egg-info"):
            if any(path.rglob("*.py")) or any(path.rglob("*.sql")):
                assert f"COPY {path.name} ./{path.name}" in text, path.name
    assert "COPY pyproject.toml requirements.lock README.md ./" in text  # README: pyproject's readme
    ignored = (REPO_DIR / ".dockerignore").read_text().split()
    assert ".venv" in ignored and not ({"etl", "training", "validation", "sql", "dags", "docker"} & set(ignored))
    # The init service runs a script the image has, executable.
    script = REPO_DIR / "docker" / "airflow-init.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
