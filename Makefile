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

run: $(STAMP)
	@for f in deployments/triggers/*.json; do \
		echo "== $$f"; \
		$(BIN)/cluster-triggers validate "$$f" > /dev/null && $(BIN)/cluster-triggers preview "$$f" --next 3 || exit $$?; \
	done

test: $(STAMP)
	$(BIN)/pytest
