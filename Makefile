# notifsvc — the two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Local defaults for `make run`: deliveries of the log channel land in a file, webhooks may
# only go to this machine.
export NOTIFSVC_LOG_PATH ?= .notifsvc/log-channel.jsonl
export NOTIFSVC_WEBHOOK_ALLOWED_HOSTS ?= localhost,127.0.0.1

.PHONY: install run infra test unit integration lint typecheck format clean

# Further targets (benchmarks, load test, chaos, deployment checks) live in mk/*.mk.
-include mk/*.mk

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,test,load]'
	touch $@

run: install  ## the whole pipeline on an embedded broker and database
	$(BIN)/notifsvc dev

infra: install  ## only the broker and database; prints their NOTIFSVC_* settings
	$(BIN)/notifsvc dev --infra-only

# Test files run on PYTEST_WORKERS processes (pytest-xdist), each file on one of them, each
# process with its own broker and database; PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

test: install lint typecheck  ## lint, type-check, then every test
	$(BIN)/pytest $(PYTEST_PARALLEL)

unit: install
	$(BIN)/pytest unit

integration: install
	$(BIN)/pytest $(PYTEST_PARALLEL) integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .notifsvc .mypy_cache .ruff_cache .pytest_cache .hypothesis
