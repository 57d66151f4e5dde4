# The two commands of the quick start: `make run` and `make test`. Each sets itself up.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# A local Prefect server (SQLite), work pool, worker and the example triggers; Ctrl-C stops it all.
run: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/python -m prefect_cluster_triggers.deployments.stack

test: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/pytest
