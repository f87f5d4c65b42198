# make demo   set up what the demo needs and run it
# make test   set up everything, then lint, type-check and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test lint demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade "pip>=25.1"
	$(BIN)/python -m pip install -q -e ".[all]" --group dev
	touch $@

# The demo needs only the FastAPI and ui extras, uvicorn and httpx: a quick first run.
$(VENV)/.demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[fastapi,ui]" uvicorn httpx
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

demo: $(VENV)/.demo
	$(BIN)/python -m examples.demo

# Overhead against the bare app and peers, real servers under wrk (Debian package), memory.
bench: setup
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python -m pip install -q -e ".[all]" --group bench
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .tenant-trace
