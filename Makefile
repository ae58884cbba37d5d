# The two commands a user needs: `make demo` and `make test`. Each builds .venv from nothing
# (only python3 >= 3.10, git and make required) and is quick when it already exists.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV := $(BIN)/uv

.PHONY: demo test lint typecheck unit bench pipeline clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is required"'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python requirements/dev.lock pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(UV) pip sync --quiet --python $(BIN)/python requirements/dev.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not integration"

test: $(STAMP) lint
	bash tools/ensure-ffmpeg.sh
	$(BIN)/pytest

demo: $(STAMP)
	bash tools/ensure-ffmpeg.sh
	$(BIN)/python tools/demo.py

pipeline: $(STAMP)
	bash tools/ensure-ffmpeg.sh
	$(BIN)/python tools/demo.py --pipeline

bench: $(STAMP)
	$(BIN)/python benchmarks/polling.py
	$(BIN)/python benchmarks/async_clients.py
	$(BIN)/python benchmarks/download.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
