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
PYTEST_ARGS ?= -n 2
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 8000

.PHONY: setup demo test test-fast lint ui mlflow-ui serve bench export-csv clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Benchmark-only dependencies (psutil, the peer libraries statsforecast and mlforecast).
$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.yaml $@

setup: $(BIN)/.installed $(DAGSTER_HOME)/dagster.yaml

DATA_ASSETS := group:raw_domains or group:ground_truth or group:features
MATERIALIZE := $(BIN)/dagster asset materialize -m demand_assets.definitions

## The whole graph: the data for DEMO_START..DEMO_END (inclusive) as one single-run backfill,
## the response curves and the daily spend ROI over the same range, then the backtest and the
## registered champion, the champion's forecast as of DEMO_END and its accuracy, and the
## business-impact assets built on them.
demo: setup
	$(MATERIALIZE) --select '$(DATA_ASSETS)' --partition-range $(DEMO_START)...$(DEMO_END)
	$(MATERIALIZE) --select spend_response_model
	$(MATERIALIZE) --select spend_roi --partition-range $(DEMO_START)...$(DEMO_END)
	$(MATERIALIZE) --select 'model_backtest,champion_model' -c deploy/demo_models.yaml
	$(MATERIALIZE) --select sku_forecast_models -c deploy/demo_sku.yaml
	$(MATERIALIZE) --select demand_forecast --partition $(DEMO_END)
	$(MATERIALIZE) --select forecast_accuracy --partition $(DEMO_END)
	$(MATERIALIZE) --select 'budget_allocation,forecast_error_cost,instock_value'
	$(MATERIALIZE) --select spend_scenario -c deploy/demo_scenario.yaml
	@echo "Tables: $(DEMAND_HOME)/delta. UI: make ui. MLflow: make mlflow-ui"

## The forecast service on the embedded store (http://127.0.0.1:8000/docs). POST /predict needs
## the per-SKU models: `make demo` trains them (sku_forecast_models).
serve: setup
	$(BIN)/uvicorn --factory demand_assets.serving.app:create_app_from_env --host $(SERVE_HOST) --port $(SERVE_PORT)

## MLflow's UI on the embedded tracking store (http://127.0.0.1:5000).
mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(DEMAND_HOME)/mlflow/mlflow.db --host 127.0.0.1 --port 5000

## Lint, format, types and the generated settings table, then the whole suite (slowest 15 shown).
test: setup lint
	$(BIN)/python -m pytest --durations=15 $(PYTEST_ARGS)

## The quick loop while developing: everything but the tests marked slow.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/demand-settings-docs --check

## The Dagster UI on this code location (http://127.0.0.1:3000).
ui: setup
	$(BIN)/dagster dev -w workspace.yaml

## All benchmarks (each writes benchmarks/results/<name>.json; about an hour on 2 cores).
bench: setup $(BIN)/.bench-installed
	$(BIN)/python -m benchmarks.foundation
	$(BIN)/python -m benchmarks.forecasting
	$(BIN)/python -m benchmarks.spend_response
	$(BIN)/python -m benchmarks.serving_load
	$(BIN)/python -m benchmarks.peers
	$(BIN)/python -m benchmarks.training_time

## Export the configured source as a daily CSV snapshot (country, channel and product files): make export-csv OUT=./snapshot
export-csv: setup
	$(BIN)/demand-export-csv --start $(DEMO_START) --end $(DEMO_END) --out $(OUT)

clean:
	rm -rf $(VENV) *.egg-info
