# Everything runs inside .venv, built from python3 on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint type pytest bench check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## run: set up, then run the demo
run: setup
	$(BIN)/macp up examples/wordcount/topology.yaml --task '{"corpus": "examples/wordcount/corpus"}'

## test: set up, then lint, type-check and run every test
test: setup lint type pytest

lint: setup
	$(BIN)/ruff format --check macp tests examples
	$(BIN)/ruff check macp tests examples

type: setup
	$(BIN)/mypy macp tests examples

pytest: setup
	$(BIN)/pytest

check: test

## bench: set up, then run the benchmarks (macp against raw pyzmq/queue and bare Pykka)
bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
