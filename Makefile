# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make run` installs what the daemon needs; the test tools come with `make test`/`make check`.
RUNTIME := $(VENV)/.installed
TOOLS := $(VENV)/.installed-test

.PHONY: run test test-thorough check lint bench clean

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

$(TOOLS): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(TOOLS)

# Dry run on the shipped config: nothing leaves the machine, request bodies go to ./var/state/outbox.
run: $(RUNTIME)
	mkdir -p var/exports var/state
	BASE_OUTPUT_DIRECTORY=$(CURDIR)/var/exports $(BIN)/rpi-braze-sync run \
		--config config/rpi-braze-sync.yaml --dry-run --state-directory $(CURDIR)/var/state

# Two workers: most of the suite waits (settle times, daemons, timeouts), so two overlap
# well even on 2 cores; worksteal keeps both busy to the end.
test: $(TOOLS)
	$(BIN)/pytest -q -n 2 --dist worksteal

# Every property-based test draws its full count of examples (the default suite, half: tests/examples.py).
test-thorough: $(TOOLS)
	RPI_BRAZE_SYNC_THOROUGH=1 $(BIN)/pytest -q -n 2 --dist worksteal

check: $(TOOLS)
	$(BIN)/ruff check daemon tests
	$(BIN)/ruff format --check daemon tests
	$(BIN)/mypy

bench: $(RUNTIME)
	$(BIN)/python tests/benchmarks/run.py $(BENCH)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
