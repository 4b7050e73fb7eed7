# Two commands: `make run` and `make test`. Both create .venv when missing and are
# idempotent: dependencies are reinstalled only when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.stamp-run
STAMP_TEST := $(VENV)/.stamp-test
DATA_DIR ?= .grace

.PHONY: run demo test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/grace serve --demo --data-dir $(DATA_DIR)

demo: $(STAMP_RUN)
	$(BIN)/grace demo --data-dir $(DATA_DIR)

lint: $(STAMP_TEST)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP_TEST)
	$(BIN)/mypy

unit: $(STAMP_TEST)
	$(BIN)/pytest --cov --cov-report=term

test: lint typecheck unit

bench: $(STAMP_RUN)
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/mesh.py
	$(BIN)/python bench/governance.py
	$(BIN)/python bench/immune.py
	$(BIN)/python bench/verification.py
	$(BIN)/python bench/server.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
