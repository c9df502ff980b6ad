# One entry for every routine task. `make demo` and `make test` work on a fresh machine that
# has only Python 3.11, git and make: the virtual environment is created and the project
# installed into it on first use (and again whenever pyproject.toml changes).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export JAX_PLATFORMS ?= cpu
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install demo test test-fast bench lint format browser clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

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
