"""Shared fixtures: real SQLite files and real PostgreSQL databases, created per test and dropped after.

PostgreSQL tests run when ``SHOPMTL_TEST_POSTGRES_URL`` is set or a server answers on 127.0.0.1:5432.
With ``SHOPMTL_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) an unreachable server fails them instead.
Every database they create is named ``$SHOPMTL_TEST_DB_PREFIX<random>`` (default ``shopmtl_test_``),
so that on a shared server they are recognisable, and dropped after the test.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REPO_DIR = Path(__file__).resolve().parents[1]
DB_PREFIX = os.environ.get("SHOPMTL_TEST_DB_PREFIX") or "shopmtl_test_"
if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", DB_PREFIX):
    raise pytest.UsageError(f"SHOPMTL_TEST_DB_PREFIX must be a lower-case SQL identifier prefix, got {DB_PREFIX!r}")


def new_database_name(kind: str = "") -> str:
    """A fresh test database name: the prefix, ``kind`` (e.g. ``airflow_``) and 12 random hex digits."""
    return f"{DB_PREFIX}{kind}{uuid.uuid4().hex[:12]}"

# Airflow reads its configuration when first imported, so the test Airflow is set up before any test
# module can import it: a private AIRFLOW_HOME (SQLite metadata DB) and this repository's DAG folder.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="shopmtl_airflow_")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_DIR / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.pop("AIRFLOW_CONN_SHOPMTL_WAREHOUSE", None)
os.environ.pop("SHOPMTL_ARTIFACTS_URL", None)  # artifacts stay in each test's SHOPMTL_HOME unless a test says


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated Airflow metadata database for ``dag.test()`` (once per session)."""
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return os.environ["AIRFLOW_HOME"]


def _postgres_admin_url() -> tuple[str | None, str]:
    """(admin URL, reason) — the URL is None when no server is configured or answering."""
    configured = os.environ.get("SHOPMTL_TEST_POSTGRES_URL")
    if configured:
        return configured, "the server of SHOPMTL_TEST_POSTGRES_URL"
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return DEFAULT_POSTGRES_URL, "the server answering on 127.0.0.1:5432"
    except OSError as error:
        return None, (
            f"PostgreSQL tests skipped: SHOPMTL_TEST_POSTGRES_URL is not set and nothing answers on "
            f"127.0.0.1:5432 ({error}); set it to a server where this user may create databases"
        )


@pytest.fixture
def shopmtl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private SHOPMTL_HOME for one test."""
    home = tmp_path / "shopmtl_home"
    home.mkdir()
    monkeypatch.setenv("SHOPMTL_HOME", str(home))
    return home


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of an empty SQLite warehouse file."""
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture(scope="session")
def postgres_admin():
    """An AUTOCOMMIT engine on the test server's admin database (to create and drop databases); skips
    the test when no server is configured or answering, fails it instead under SHOPMTL_REQUIRE_POSTGRES=1."""
    import sqlalchemy as sa

    from etl.warehouse import normalize_url

    admin_url, reason = _postgres_admin_url()
    if admin_url is None:
        if os.environ.get("SHOPMTL_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (SHOPMTL_REQUIRE_POSTGRES=1) but unreachable: {reason}")
        pytest.skip(reason)
    engine = sa.create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def database_names():
    """``new_database_name``, for tests that create PostgreSQL databases of their own."""
    return new_database_name


@pytest.fixture
def postgres_url(postgres_admin) -> Iterator[str]:
    """URL of a fresh PostgreSQL database, dropped after the test."""
    admin = postgres_admin
    name = new_database_name()
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as error:
        if os.environ.get("SHOPMTL_REQUIRE_POSTGRES") == "1":
            raise
        reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
        pytest.skip(f"PostgreSQL tests skipped: cannot create database {name} on {admin.url.render_as_string()}: {reason}")
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest) -> str:
    """The same test on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server (moto in server mode, over HTTP like any S3) for the session."""
    import logging

    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request in the test logs
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_artifacts(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """SHOPMTL_ARTIFACTS_URL on a new bucket of the local S3 server; endpoint and credentials come from
    the standard AWS variables, as in a deployment."""
    import s3fs

    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "shopmtl-test", "AWS_SECRET_ACCESS_KEY": "shopmtl-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    bucket = f"shopmtl-test-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(bucket)
    url = f"s3://{bucket}/artifacts"
    monkeypatch.setenv("SHOPMTL_ARTIFACTS_URL", url)
    return url
