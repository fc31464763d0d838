# spy_pipeline: every target bootstraps .venv (Python 3.12) on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

# Python 3.12+: python3.12 on PATH, else python3 if new enough, else the pyenv version in .python-version.
PYTHON312 := $(shell \
  if command -v python3.12 >/dev/null 2>&1 && python3.12 -c 'import sys' >/dev/null 2>&1; then command -v python3.12; \
  elif command -v python3 >/dev/null 2>&1 && python3 -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then command -v python3; \
  elif [ -x "$${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$(cat .python-version 2>/dev/null)/bin/python" ]; then echo "$${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$(cat .python-version)/bin/python"; \
  fi)

.PHONY: help run test dev dev-postgres postgres-binaries browser-binaries lint bench venv clean soak

help:
	@echo "make run    backfill the asset graph for the last trading days against the embedded sandbox"
	@echo "make test   run the test suite"
	@echo "make dev    open the Dagster UI (and daemon) on http://127.0.0.1:3000"
	@echo "make dev-postgres   the same on the production instance profile (PostgreSQL; DAGSTER_PG_* variables)"
	@echo "make lint   ruff and the import contracts (lint-imports)"
	@echo "make bench  benchmarks, printing figures and ratios"
	@echo "make soak   fault-injection soak and SIGKILL crash checks, printing a Markdown table"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON312)" ]; then echo "No Python 3.12 found: install python3.12 (or pyenv install $$(cat .python-version)) and retry."; exit 1; fi
	@if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
	  rm -rf $(VENV) && $(PYTHON312) -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# The greeks kernels compiled once into numba's on-disk cache (~30 s), not by each process that first uses them.
KERNELS := $(VENV)/.kernels
$(KERNELS): $(STAMP) spy_pipeline/domain/black_scholes.py spy_pipeline/domain/vector_math.py
	$(PY) -c 'from spy_pipeline.domain.black_scholes import compile_kernels; compile_kernels()'
	@touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

run: $(KERNELS) $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/spy-pipeline run

# The tests start a real PostgreSQL server from Debian's binaries (spy_pipeline_tests/test_postgres_instance.py).
PG_INITDB_FOUND := ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1

# $(call debian_package,COMMAND THAT SUCCEEDS WHEN INSTALLED,PACKAGE,WHY): install a Debian package for the tests
# as root, or say which test fails without it.
define debian_package
	@if ! { $(1); }; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's $(2) package: $(3)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
	  else \
	    echo "Debian's $(2) package is missing, so $(3) will fail: run 'sudo apt-get install $(2)' first."; \
	  fi; \
	fi
endef

postgres-binaries:
	$(call debian_package,$(PG_INITDB_FOUND),postgresql,test_postgres_instance.py (a real PostgreSQL server))

# The UI test drives Debian's Chromium with Playwright's Python driver (spy_pipeline_tests/test_ui_browser.py); no
# browser download.
browser-binaries:
	$(call debian_package,[ -x /usr/bin/chromium ],chromium,test_ui_browser.py (a real headless browser))

# Parallel workers (pytest-xdist): many tests wait on servers and subprocesses, so more workers than cores pay.
# Tests sharing a module-scoped fixture stay on one worker, heavy groups first (spy_pipeline_tests/parallel.py).
# TEST_WORKERS=0: serial.
TEST_WORKERS ?= 4
test: $(KERNELS) postgres-binaries browser-binaries
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=15

dev: $(KERNELS) $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000

# The production instance profile (PostgreSQL) in its own DAGSTER_HOME. Host, port, user and database default to
# 127.0.0.1:5432, dagster, dagster; DAGSTER_PG_PASSWORD must be set (it may be empty for trust authentication).
PG_DAGSTER_HOME := $(CURDIR)/.dagster_home_pg
PG_PROFILE := spy_pipeline/deploy/postgres/dagster.yaml

$(PG_DAGSTER_HOME)/dagster.yaml: $(PG_PROFILE)
	@mkdir -p $(PG_DAGSTER_HOME)
	cp $(PG_PROFILE) $@

dev-postgres: $(KERNELS) $(PG_DAGSTER_HOME)/dagster.yaml
	@if [ -z "$${DAGSTER_PG_PASSWORD+set}" ]; then \
	  echo "Set DAGSTER_PG_PASSWORD (and DAGSTER_PG_HOST/PORT/USER/DB unless 127.0.0.1, 5432, dagster, dagster)."; exit 1; fi
	DAGSTER_HOME=$(PG_DAGSTER_HOME) DAGSTER_PG_HOST=$${DAGSTER_PG_HOST:-127.0.0.1} \
	  DAGSTER_PG_PORT=$${DAGSTER_PG_PORT:-5432} DAGSTER_PG_USER=$${DAGSTER_PG_USER:-dagster} \
	  DAGSTER_PG_DB=$${DAGSTER_PG_DB:-dagster} $(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: $(KERNELS)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) -m spy_pipeline_tests.bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Fault soak (not part of `make test`): random fault plans per mode and SIGKILL crash checks, loopback only.
# SOAK_ARGS="--runs 5 --kills 20 --max-minutes 30" to go longer.
soak: $(KERNELS)
	$(PY) -m spy_pipeline_tests.soak $(SOAK_ARGS)
