# Everything runs from a local virtual environment that `make` creates on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WITH_REDIS := $(BIN)/python -m shopsync.devredis --
# Test processes for `make test` (pytest-xdist); each test has its own key prefix and sandboxes.
# 2 halves the suite's wall time on a 2-core machine (463 s -> 233-250 s); 0 runs it in one process.
TEST_WORKERS ?= 2

.PHONY: install run test test-all lint typecheck bench reliability sandbox clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## make test: lint, types, and the representative test suite against a real Redis
test: lint typecheck
	$(WITH_REDIS) $(BIN)/pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

## make test-all: every test, the slow stress and scale ones included
test-all: lint typecheck
	$(WITH_REDIS) $(BIN)/pytest -q -m '' $(PYTEST_ARGS)

## make run: sandbox store + APSIS account, receiver, worker, a full sync, then live webhooks
run: $(STAMP)
	$(WITH_REDIS) $(BIN)/python -m shopsync.demo

## make bench: the benchmarks; JSON under bench/results/, a table on stdout
bench: $(STAMP)
	$(WITH_REDIS) $(BIN)/python -m bench.run $(BENCH_ARGS)

## make reliability: load, faults, bad input and security (up to 15 min); table + bench/results/reliability-*.json
reliability: $(STAMP)
	$(WITH_REDIS) $(BIN)/python -m reliability $(RELIABILITY_ARGS)

sandbox: $(STAMP)
	$(BIN)/shopsync sandbox

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache bench/results .cache/shopify-schema
