# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Dry run on the shipped config: nothing leaves the machine, request bodies go to ./var/state/outbox.
run: $(STAMP)
	mkdir -p var/exports var/state
	BASE_OUTPUT_DIRECTORY=$(CURDIR)/var/exports $(BIN)/rpi-braze-sync run \
		--config config/rpi-braze-sync.yaml --dry-run --state-directory $(CURDIR)/var/state

test: $(STAMP)
	$(BIN)/pytest -q

check: $(STAMP)
	$(BIN)/ruff check daemon tests
	$(BIN)/ruff format --check daemon tests
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/run.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
