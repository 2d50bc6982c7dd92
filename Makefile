# Quick start: `make demo` and `make test` work on a fresh machine with nothing but Python.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, from an overridable spec, so that the project's torch range is already met
# and pip does not pull a multi-GB CUDA build into a CPU-only venv.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/siamtext demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

lint: $(STAMP)
	$(BIN)/ruff check siamtext tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/encode_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
