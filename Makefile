# The two commands a user needs: `make demo` and `make test`. Each builds .venv from nothing
# (only python3 >= 3.10, git and make required) and is quick when it already exists.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit matrix docs dist bench pipeline gallery airflow stop clean fuzz \
	screenshots

# tools/bootstrap.py: venv, pinned uv, `uv pip sync` trusting the system certificate store; on a
# network failure it names the step and what to check (proxy, CA). Stdlib only.
$(STAMP): requirements/dev.lock pyproject.toml tools/bootstrap.py
	$(PYTHON) tools/bootstrap.py --venv $(VENV) --lock requirements/dev.lock

# tools/layers.py: the architecture (which part of the package may import which, no import
# cycle, a reason on each import inside a function); docs/development.rst, Architecture.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/bandit -q -c pyproject.toml -r kling_provider
	$(BIN)/python tools/layers.py

unit: $(STAMP)
	$(BIN)/pytest -m "not integration"

# Lint, docs and the whole suite on the main lock, beside the version matrix (tools/matrix.py:
# the other Airflow minors and the lowest/highest Python, each in a cached .venv-<entry>); three
# lanes side by side (tools/run_tests.py says which and why). KLING_TEST_WORKERS=0 (the default)
# runs each of the suite's two parts serially.
test: $(STAMP)
	bash tools/ensure-ffmpeg.sh
	bash tools/ensure-chromium.sh
	$(BIN)/python tools/run_tests.py

# The property and stateful tests, randomized and much longer than in `make test` (which runs
# a fixed number of examples from a derandomized seed): tests/hypothesis_profiles.py.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -p no:cacheprovider --hypothesis-show-statistics \
		$(wildcard tests/test_properties*.py tests/test_stateful*.py)

matrix: $(STAMP)
	$(BIN)/python tools/matrix.py

# The documentation site (Sphinx), warnings as errors: docs/_build/html/index.html.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# The wheel and sdist a user installs: dist/.
dist: $(STAMP)
	rm -rf dist
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m build --installer uv --outdir dist .
	$(BIN)/twine check --strict dist/*

demo: $(STAMP)
	bash tools/ensure-ffmpeg.sh
	$(BIN)/python tools/demo.py

# The same whole local Airflow as `make airflow`, on the demo's home: its runs, logs and videos.
gallery: $(STAMP)
	$(BIN)/python tools/local_airflow.py start --home .airflow-demo --videos demo-output

pipeline: $(STAMP)
	bash tools/ensure-ffmpeg.sh
	$(BIN)/python tools/demo.py --pipeline

# A whole local Airflow (api-server, scheduler, dag-processor, triggerer) against the simulator, in
# the background: tools/local_airflow.py prints its URL and login. TIME_SCALE=1 runs the simulator
# at real speed (default 10: a 5 s video takes 32 s). `make stop` stops it (and `make gallery`).
airflow: $(STAMP)
	$(BIN)/python tools/local_airflow.py start

stop: $(STAMP)
	$(BIN)/python tools/local_airflow.py stop

# The README's and docs' pictures, taken in headless Chromium from a fresh `make demo` and its
# Airflow, then a run of the review DAG on it (tools/screenshots.py): docs/images/*.png and the
# figures they show, screenshots.json.
screenshots: $(STAMP)
	bash tools/ensure-ffmpeg.sh
	bash tools/ensure-chromium.sh
	$(BIN)/python tools/screenshots.py

# Every benchmark in benchmarks/, each printing its table; the gallery's needs Chromium and the
# demo's Airflow home, so a first `make bench` runs the demo. Run it under the heavy lock.
bench: $(STAMP)
	bash tools/ensure-ffmpeg.sh
	bash tools/ensure-chromium.sh
	$(BIN)/python benchmarks/polling.py
	$(BIN)/python benchmarks/parse_cost.py
	$(BIN)/python benchmarks/triggerer.py
	$(BIN)/python benchmarks/timers.py
	$(BIN)/python benchmarks/async_clients.py
	$(BIN)/python benchmarks/download.py
	test -e .airflow-demo/.migrated || $(BIN)/python tools/demo.py
	$(BIN)/python benchmarks/gallery_views.py

clean:
	rm -rf $(VENV) .venv-* .screenshots dist docs/_build mutants .mypy_cache .pytest_cache .ruff_cache build *.egg-info

# Mutation testing of the paid path (tools/mutation.py): per-module kill rates; fails under 90 %.
# Slow (minutes per module), so not part of `make test`. One module: make mutation MODULES=_money/guard.py
.PHONY: mutation
MODULES ?=
mutation: $(STAMP)
	bash tools/ensure-ffmpeg.sh
	$(BIN)/python tools/mutation.py $(MODULES)
