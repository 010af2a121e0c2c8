# bettercat: every target sets itself up (venv + pinned install) on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

# Spark's Python workers must run the venv's interpreter (sklearn lives there).
export PYSPARK_PYTHON        := $(BIN)/python
export PYSPARK_DRIVER_PYTHON := $(BIN)/python
export BETTERCAT_HOME        ?= $(CURDIR)/.bettercat
export DAGSTER_HOME          ?= $(BETTERCAT_HOME)/dagster_home

.PHONY: install demo test test-fast lint format dev mlflow-ui bench bench-quick up clean

# deploy/install.sh is shared with the Dockerfile, so the image installs exactly what CI tests.
$(STAMP): pyproject.toml constraints.txt deploy/install.sh
	PYTHON=$(PYTHON) deploy/install.sh $(VENV)
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the pinned dependencies

demo: install ## sample data for 10 clients, then train and score every client through Dagster
	$(BIN)/bettercat demo

test: install ## the whole test suite (unit + integration + slow end-to-end), three workers
	$(BIN)/pytest -n 3 --dist loadfile --no-loadscope-reorder --durations=15 $(PYTEST_ARGS)

test-fast: install ## unit tests only (seconds)
	$(BIN)/pytest -m "not integration and not slow" $(PYTEST_ARGS)

lint: install ## ruff, and the import contracts of pyproject.toml (core without Dagster, layers, lean workers)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

dev: install ## Dagster UI + daemon on http://127.0.0.1:3000 with a persistent DAGSTER_HOME
	mkdir -p $(DAGSTER_HOME) && cp -n deploy/dagster.local.yaml $(DAGSTER_HOME)/dagster.yaml || true
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

mlflow-ui: install ## MLflow UI on the same tracking store, http://127.0.0.1:5000
	$(BIN)/bettercat mlflow-ui

bench-quick: install ## benchmark, quick mode (about 5 minutes)
	$(BIN)/python -m bench.run --quick

bench: install ## benchmark, full sizes
	$(BIN)/python -m bench.run

up: ## production profile with Docker Compose (needs a Docker engine)
	BETTERCAT_GIT_SHA=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
		docker compose -f deploy/docker-compose.yaml up --build

clean:
	rm -rf $(VENV) .bettercat data
