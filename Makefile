# Two commands do all set-up on a fresh machine: `make study` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest-xdist workers for `make test` (tests/conftest.py keeps tests that share state on one worker).
TEST_WORKERS ?= 2

.PHONY: study test lint bench describe clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 is pinned in pyproject: the CPU wheel on local disk, not a multi-GB CUDA build.
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

study: $(STAMP)
	$(PY) -m search run studies/default.toml

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

describe: $(STAMP)
	$(PY) -m focalnet describe

bench: $(STAMP)
	$(PY) bench/bench_model.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
