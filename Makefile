# Quick start: `make demo` (set up + materialize the whole graph for the default window)
#              `make test` (set up + run the test suite)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMAND_HOME ?= $(CURDIR)/.demand_home
DAGSTER_HOME := $(abspath $(DEMAND_HOME))/dagster
export DEMAND_HOME := $(abspath $(DEMAND_HOME))
export DAGSTER_HOME
# The demo's window ends yesterday, so that right after `make demo` the newest partition exists
# with its 28-day look-back and the daily schedule and the automation carry the graph forward
# (see docs/operations.md). It starts 729 days earlier on the first run; that first day is kept in
# $(DEMAND_HOME)/partition_start and is the first daily partition `make demo` and `make ui` show
# (DEMAND_PARTITION_START), so a later `make demo` extends the same store to the new yesterday.
PARTITION_START_FILE := $(DEMAND_HOME)/partition_start
days_before = $(shell $(PYTHON) -c 'import datetime as d; print(d.date.fromisoformat("$(1)") - d.timedelta(days=$(2)))')
DEMO_END ?= $(shell $(PYTHON) -c 'import datetime as d; print(d.date.today() - d.timedelta(days=1))')
DEMO_START ?= $(shell cat $(PARTITION_START_FILE) 2>/dev/null || echo $(call days_before,$(DEMO_END),729))
PYTEST_ARGS ?= -n 2
# The demo's backtest and refit run their units (one step per model x fold x shard) in one
# process: on 2 cores a process per unit cost more than it saved (docs/scaling.md). With cores to
# spare: MODEL_EXECUTOR=multiprocess and DEMAND_TRAINING_SLOTS (then `demand-deploy pools`).
MODEL_EXECUTOR ?= in_process
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

# The embedded instance, and its concurrency pools (model_training: DEMAND_TRAINING_SLOTS backtest
# units and refits at once; rerun `demand-deploy pools` after changing it).
$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.yaml | $(BIN)/.installed
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.yaml $@
	$(BIN)/demand-deploy pools

setup: $(BIN)/.installed $(DAGSTER_HOME)/dagster.yaml

# `dg launch` (Dagster's current CLI; `dagster asset materialize` is superseded) runs a run's steps
# in parallel processes (Dagster's multiprocess executor; the backtest's units and the refits, at
# most DEMAND_TRAINING_SLOTS at once) against the instance in DAGSTER_HOME, on the code location
# of pyproject's [tool.dg].
MATERIALIZE := $(BIN)/dg launch
# The assets of a demo step that the configured source (DEMAND_SOURCE) can fill: a real source
# (M5, a transaction log) has no spend, country totals or ground truth, and its history is
# backfilled without those assets rather than recording "not provided" for every day.
selection = $(shell $(BIN)/demand-selection $(1))

## The whole graph: the data for DEMO_START..DEMO_END (inclusive) as one single-run backfill,
## the response curves and the daily spend ROI over the same range, then the backtest and the
## registered champion, the champion's forecasts as of the last 29 days (so that DEMO_END's
## accuracy, and each new day's, scores the forecast made 28 days before), and the
## business-impact assets built on them.
demo ui: export DEMAND_PARTITION_START ?= $(DEMO_START)
demo: setup
	@$(BIN)/demand-selection data > /dev/null  # a misconfigured source stops here, with its error
	@mkdir -p $(DEMAND_HOME) && test -f $(PARTITION_START_FILE) || echo $(DEMO_START) > $(PARTITION_START_FILE)
	@echo "demo window $(DEMO_START)..$(DEMO_END) (source: $${DEMAND_SOURCE:-synthetic})"
	$(MATERIALIZE) --assets '$(call selection,data)' --partition-range $(DEMO_START)...$(DEMO_END)
	$(if $(call selection,spend_curves),$(MATERIALIZE) --assets spend_response_model)
	$(if $(call selection,spend_roi),$(MATERIALIZE) --assets spend_roi --partition-range $(DEMO_START)...$(DEMO_END))
	DEMAND_EXECUTOR=$(MODEL_EXECUTOR) $(MATERIALIZE) --assets 'model_backtest,champion_model' -c deploy/demo_models.yaml
	$(MATERIALIZE) --assets sku_forecast_models -c deploy/demo_sku.yaml
	$(MATERIALIZE) --assets demand_forecast --partition-range $(call days_before,$(DEMO_END),28)...$(DEMO_END)
	$(MATERIALIZE) --assets forecast_accuracy --partition $(DEMO_END)
	$(MATERIALIZE) --assets '$(call selection,impact)'
	$(if $(call selection,spend_scenario),$(MATERIALIZE) --assets spend_scenario -c deploy/demo_scenario.yaml)
	$(if $(call selection,next_event),$(MATERIALIZE) --assets next_event_model)
	$(if $(call selection,next_event),$(MATERIALIZE) --assets purchase_intent --partition-range $(call days_before,$(DEMO_END),6)...$(DEMO_END))
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
	$(BIN)/dg dev

## All benchmarks (each writes benchmarks/results/<name>.json; about an hour on 2 cores).
bench: setup $(BIN)/.bench-installed
	$(BIN)/python -m benchmarks.foundation
	$(BIN)/python -m benchmarks.forecasting
	$(BIN)/python -m benchmarks.spend_response
	$(BIN)/python -m benchmarks.serving_load
	$(BIN)/python -m benchmarks.next_event_load
	$(BIN)/python -m benchmarks.next_event --sessions 0.25
	$(BIN)/python -m benchmarks.peers
	$(BIN)/python -m benchmarks.training_time

## Export the configured source as a daily CSV snapshot (country, channel and product files): make export-csv OUT=./snapshot
export-csv: setup
	$(BIN)/demand-export-csv --start $(DEMO_START) --end $(DEMO_END) --out $(OUT)

clean:
	rm -rf $(VENV) *.egg-info
