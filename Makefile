# The two commands of the quick start: `make run` and `make test`. Each sets itself up.
# `make run` installs what running needs; `make test` adds the test extras (pytest, moto,
# PostgreSQL in a wheel, Playwright: about 1.5 GB more) on top of the same .venv.

# The first supported Python on PATH (3.11 to 3.13, as pyproject.toml's requires-python);
# `make PYTHON=/path/to/python3.12` picks another.
ifndef PYTHON
PYTHON := $(shell for p in python3.11 python3.12 python3.13 python3; do \
	$$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info < (3, 14))' 2>/dev/null && { echo $$p; break; }; done)
endif
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# setuptools' note that any editable install prints ("Editable installation. Please be careful
# with folders ..."), nine lines of noise on every first install; nothing else is silenced.
PIP_INSTALL := PYTHONWARNINGS='ignore:Editable installation.' $(BIN)/pip install --quiet

.PHONY: run test install install-test

install: $(STAMP)

install-test: $(TEST_STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "no Python 3.11, 3.12 or 3.13 on PATH (python3.11, python3.12, python3.13 or python3); install one or set PYTHON=" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(PIP_INSTALL) -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PIP_INSTALL) -e '.[test]'
	touch $(TEST_STAMP)

# A local Prefect server (SQLite), work pool, worker and the example triggers; Ctrl-C stops it all.
run: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/python -m prefect_cluster_triggers.deployments.stack

# Two pytest processes (pytest-xdist), each with its own session servers; a process that runs out of
# tests takes some of the other's (worksteal).
test: $(TEST_STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/pytest -n 2 --dist worksteal
