# One entry for every routine task. `make demo` and `make test` work on a fresh machine that
# has only Python 3.11, git and make: the virtual environment is created on first use and
# holds exactly the committed lock (uv.lock), installed again whenever it or pyproject.toml
# changes. uv itself is bootstrapped with pip from scripts/uv-bootstrap.txt (pinned, hashed).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
STAMP  := $(VENV)/.installed
export JAX_PLATFORMS ?= cpu
export PYTHONDONTWRITEBYTECODE := 1
# uv installs into this project's .venv, never downloads a Python, and installs the lock as is.
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
EXTRAS ?= --extra dev --extra examples

.PHONY: install lock lock-check demo test test-fast bench lint format browser clean

$(UV): scripts/uv-bootstrap.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r scripts/uv-bootstrap.txt
	@touch $(UV)

$(STAMP): pyproject.toml uv.lock $(UV)
	$(UV) sync --locked $(EXTRAS) --python $(BIN)/python --quiet
	@touch $(STAMP)

install: $(STAMP)

## Refresh uv.lock from pyproject.toml (newest versions its ranges allow; `uv lock -P NAME`
## upgrades one package), and the pinned installer beside it. Commit both.
lock: $(UV)
	$(UV) lock --python $(BIN)/python
	scripts/write-uv-bootstrap.sh $(UV)

## Fails when uv.lock does not satisfy pyproject.toml.
lock-check: $(UV)
	$(UV) lock --check --python $(BIN)/python

## The main job on the embedded default database (SQLite).
demo: $(STAMP)
	$(BIN)/acprop-tuner demo

## The whole test suite. Postgres-backed tests run when ACPROP_TUNER_TEST_POSTGRES_URL is set
## (.ci/run sets it and requires them); browser tests need Chromium (`make browser`).
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -m "not slow" $(PYTEST_ARGS)

## Benchmarks: writes bench/results/*.json and docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Headless Chromium for the dashboard tests (Debian's package; Playwright drives it).
browser:
	@command -v chromium >/dev/null 2>&1 || scripts/install-chromium.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
