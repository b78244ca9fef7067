# Two commands do all the set-up: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export SHOPMTL_HOME ?= $(CURDIR)/.shopmtl
DEMO_START ?= 2026-01-01
DEMO_END ?= 2026-02-04
DEMO_SCALE ?= 1
DEMO_SEED ?= 7
BENCH_SCALES ?= 1 10
BENCH_NIGHTS ?= 2

.PHONY: install demo airflow test test-all bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test,celery,peers]'
	touch $@

install: $(VENV)/.installed

## Seed the embedded demo warehouse and run the nightly DAG for its last day through Airflow.
demo: install
	$(BIN)/python -m demo --start $(DEMO_START) --end $(DEMO_END) --scale $(DEMO_SCALE) --seed $(DEMO_SEED)

## A local Airflow 3 (UI, scheduler, dag-processor, triggerer) with this DAG and the embedded warehouse;
## prints the URL and the login; Ctrl-C stops it. AIRFLOW_PORT picks the UI's port.
AIRFLOW_PORT ?= 8080
airflow: install
	$(BIN)/python -m local.airflow --port $(AIRFLOW_PORT)

## The test suite (PostgreSQL tests run when a server answers; see README).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The DAG for real at each scale on fresh PostgreSQL databases (SHOPMTL_BENCH_POSTGRES_URL's server),
## with side-by-side peers; writes bench/results.json and bench/results.md. Not part of `make test`.
bench: install
	$(BIN)/python -m bench --scales $(BENCH_SCALES) --nights $(BENCH_NIGHTS)

clean:
	rm -rf $(SHOPMTL_HOME) .pytest_cache
