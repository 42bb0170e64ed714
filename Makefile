# Everything runs inside .venv, built from python3 on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup browser run test lint type pytest bench bench-smoke check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## run: set up, then run the demo
run: setup
	$(BIN)/macp up examples/wordcount/topology.yaml --task '{"corpus": "examples/wordcount/corpus"}'

## test: set up, then lint (import layers included), type-check, run every test, and a quick
## run of every benchmark
test: setup lint type pytest bench-smoke

lint: setup
	$(BIN)/ruff format --check macp tests examples bench
	$(BIN)/ruff check macp tests examples bench
	$(BIN)/lint-imports

type: setup
	$(BIN)/mypy macp tests examples bench

## browser: the dashboard's tests drive Debian's chromium (Playwright's own browser download is
## not used): installed with apt where it is missing (as root, else through sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	    sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	    $$sudo apt-get update && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y --no-install-recommends chromium; }

pytest: setup browser
	$(BIN)/pytest

check: test

## bench: set up, then run the benchmarks (macp against raw pyzmq/queue and bare Pykka)
bench: setup
	$(BIN)/python -m bench

## bench-smoke: every workload, small, once: it must finish and print every figure
bench-smoke: setup
	$(BIN)/python -m bench --quick > /dev/null

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache
