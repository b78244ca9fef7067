# The shopmtl image: Airflow 3 plus this project, installed with the pinned constraint set.
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    AIRFLOW_HOME=/opt/airflow \
    SHOPMTL_HOME=/opt/shopmtl \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/shopmtl-src/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential libgomp1 postgresql-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/shopmtl-src
COPY pyproject.toml requirements.lock README.md ./
COPY etl ./etl
COPY training ./training
COPY validation ./validation
COPY sql ./sql
COPY dags ./dags
# The CPU build of torch keeps the image small; the gpu profile's worker installs a CUDA build.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -c requirements.lock -e . \
    && useradd --create-home --uid 50000 airflow \
    && mkdir -p "$AIRFLOW_HOME" "$SHOPMTL_HOME" && chown -R airflow "$AIRFLOW_HOME" "$SHOPMTL_HOME"
USER airflow
