# Quick start: `make demo` (set up + materialize the whole graph for the default window)
#              `make test` (set up + run the test suite)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMAND_HOME ?= $(CURDIR)/.demand_home
DAGSTER_HOME := $(abspath $(DEMAND_HOME))/dagster
export DEMAND_HOME := $(abspath $(DEMAND_HOME))
export DAGSTER_HOME
DEMO_START ?= 2023-01-01
DEMO_END ?= 2024-12-31
PYTEST_ARGS ?=

.PHONY: setup demo test ui bench export-csv clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.yaml $@

setup: $(BIN)/.installed $(DAGSTER_HOME)/dagster.yaml

## Materialize every asset for DEMO_START..DEMO_END (inclusive) as one single-run backfill.
demo: setup
	$(BIN)/dagster asset materialize -m demand_assets.definitions --select '*' \
		--partition-range $(DEMO_START)...$(DEMO_END)
	@echo "Tables are in $(DEMAND_HOME)/delta; open the UI with: make ui"

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The Dagster UI on this code location (http://127.0.0.1:3000).
ui: setup
	$(BIN)/dagster dev -w workspace.yaml

bench: setup
	$(BIN)/python -m benchmarks.foundation

## Export the configured source as a seed-001 CSV snapshot: make export-csv OUT=./snapshot
export-csv: setup
	$(BIN)/demand-export-csv --start $(DEMO_START) --end $(DEMO_END) --out $(OUT)

clean:
	rm -rf $(VENV) *.egg-info
