# The shopmtl image: Airflow 3 (CeleryExecutor extra) plus this project, installed with the pinned
# constraint set. One image runs every Airflow service of docker-compose.yml.
#   docker build -t shopmtl .                                   torch CPU build (default)
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t shopmtl:gpu .
#                                                               CUDA build (the gpu profile's worker)
FROM python:3.11-slim-bookworm

# Where pip looks for torch besides PyPI: its local version (+cpu, +cu128) sorts above PyPI's, so the
# build from this index is the one installed; requirements.lock pins torch==2.13.0 either way.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    AIRFLOW_HOME=/opt/airflow \
    SHOPMTL_HOME=/opt/shopmtl \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/shopmtl-src/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

# libgomp1: LightGBM and torch; curl: the compose healthchecks; postgresql-client: psql for operators.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential libgomp1 curl postgresql-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/shopmtl-src

# Dependencies first, in their own layer: code changes then rebuild in seconds. The packages are
# stubbed so the editable install can resolve; the real sources are copied over them below.
COPY pyproject.toml requirements.lock README.md ./
RUN mkdir -p etl training validation demo reporting \
    && touch etl/__init__.py training/__init__.py validation/__init__.py demo/__init__.py reporting/__init__.py \
    && pip install --extra-index-url "${TORCH_INDEX_URL}" -c requirements.lock -e '.[celery]'

COPY etl ./etl
COPY training ./training
COPY validation ./validation
COPY demo ./demo
COPY reporting ./reporting
COPY sql ./sql
COPY dags ./dags
COPY docker ./docker
RUN pip install --no-deps --extra-index-url "${TORCH_INDEX_URL}" -c requirements.lock -e '.[celery]' \
    && python -c "import airflow.providers.celery, redis, torch, etl, training, validation, demo, reporting; print('torch', torch.__version__)" \
    && useradd --create-home --uid 50000 --gid 0 airflow \
    && mkdir -p "$AIRFLOW_HOME/logs" "$AIRFLOW_HOME/auth" "$SHOPMTL_HOME" \
    && chown -R airflow:0 "$AIRFLOW_HOME" "$SHOPMTL_HOME" \
    && chmod -R g+rwX "$AIRFLOW_HOME" "$SHOPMTL_HOME"

# Named volumes mounted on these directories start with this ownership (docker-compose.yml mounts
# airflow-logs, airflow-auth and shopmtl-home there).
USER airflow
EXPOSE 8080 8793
CMD ["airflow", "version"]
