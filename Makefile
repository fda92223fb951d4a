# collapse-sweep: `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SPEC ?= sweeps/default.yaml
DEMO_DATA := data/demo.xlsx
DATA ?= $(DEMO_DATA)
TRIALS ?=
STUDY ?=
WORKERS ?=
GPUS ?=
STORAGE ?= optuna-journal.log
HOST ?= 127.0.0.1
UI_PORT ?= 5000
DASHBOARD_PORT ?= 8080
PYTEST_ARGS ?=

INSTALLED := $(VENV)/.installed

.PHONY: help install sweep report demo demo-imbalanced test bench lint format ui dashboard

help: ## List the targets and the variables they take
	@echo "usage: make TARGET [VARIABLE=value ...]"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'
	@echo "variables: SPEC=$(SPEC) DATA=$(DATA) TRIALS=<spec's budget> STUDY=<spec-datafile>"
	@echo "           WORKERS=<1, in one process> GPUS=<none; 0,1 or auto: a worker per GPU>"
	@echo "           STORAGE=$(STORAGE) HOST=$(HOST) UI_PORT=$(UI_PORT) DASHBOARD_PORT=$(DASHBOARD_PORT)"

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "collapse-sweep needs Python 3.11 or newer; '$(PYTHON)' is older: run make PYTHON=python3.11 ..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(INSTALLED) ## Create .venv and install the project with its test tools

$(DEMO_DATA): | $(INSTALLED)
	$(BIN)/python -m data.demo --out $@

demo: $(DEMO_DATA) ## Write the demo dataset (581 rows x 846 values) if it is absent

IMBALANCED_DATA := data/demo-imbalanced.xlsx
$(IMBALANCED_DATA): | $(INSTALLED)
	$(BIN)/python -m data.demo --out $@ --positive-share 0.25

demo-imbalanced: $(IMBALANCED_DATA) ## Write a demo dataset with one positive row in four

# A demo dataset is only made when the sweep is run on it.
sweep: $(INSTALLED) $(filter $(DEMO_DATA) $(IMBALANCED_DATA),$(DATA)) ## Run or resume the study (SPEC=, DATA=, TRIALS=, STUDY=, WORKERS=, GPUS=)
	$(BIN)/sweep run --spec $(SPEC) --data $(DATA) --storage $(STORAGE) \
		$(if $(TRIALS),--trials $(TRIALS)) $(if $(STUDY),--study $(STUDY)) \
		$(if $(WORKERS),--workers $(WORKERS)) $(if $(GPUS),--gpus $(GPUS))

report: $(INSTALLED) ## Print the study's report and save it to reports/ (SPEC=, DATA=, STUDY=, STORAGE=)
	$(BIN)/sweep report --spec $(SPEC) --data $(DATA) --storage $(STORAGE) \
		$(if $(STUDY),--study $(STUDY))

test: $(INSTALLED) ## Run the test suite (PYTEST_ARGS= passes options to pytest)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(INSTALLED) ## Run the benchmarks (about 45 minutes on 2 cores; results in bench-output/)
	$(BIN)/python -m bench.workers
	$(BIN)/python -m bench.constraint

lint: $(INSTALLED) ## Check formatting and lint with ruff
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(INSTALLED) ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

ui: $(INSTALLED) ## Open the MLflow UI on the project's store (http://HOST:UI_PORT)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host $(HOST) --port $(UI_PORT)

dashboard: $(INSTALLED) ## Open optuna-dashboard on the study storage (http://HOST:DASHBOARD_PORT)
	$(BIN)/optuna-dashboard $(STORAGE) --host $(HOST) --port $(DASHBOARD_PORT)
