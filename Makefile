# Everything CI does goes through these targets. `make test` works on a fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := docker-registry docker.io podman runc chromium skopeo umoci
BENCH_PACKAGES := wrk skopeo time

.PHONY: help deps venv notebook-venv test lint bench clean readme demo lab samples notebooks

help:
	@echo "make demo   - start a registry, load the samples, run notebooks/quickstart.ipynb headless, stop"
	@echo "make lab    - open the notebooks in JupyterLab (LAB_ARGS=\"--port=8899 --IdentityProvider.token=T --no-browser\")"
	@echo "make test   - install what is missing (apt, venv) and run the test suite"
	@echo "make lint   - ruff and mypy (settings in pyproject.toml)"
	@echo "make bench  - benchmarks against jindr 1.5.0 (printed, and the tables for the README)"

deps:
	@missing=""; for p in $(APT_PACKAGES) $(EXTRA_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing system packages:$$missing (install them, or the registry binary as 'registry')"; fi; \
	fi

BASE_PYTHON ?= python3

# The test venv: everything (the test extra includes the notebook extra, so it serves demo and lab too).
$(VENV)/.installed: pyproject.toml
	$(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.notebook

# The notebook venv: jindr_nb and the `notebook` extra only (JupyterLab, a kernel, nbclient) — what `make demo`
# and `make lab` need; none of the test tools. A test venv that is up to date already has it.
$(VENV)/.notebook: pyproject.toml
	@if [ -f $(VENV)/.installed ] && [ $(VENV)/.installed -nt pyproject.toml ]; then touch $@; else \
	  echo "creating $(VENV): jindr_nb with the notebook extra"; \
	  $(BASE_PYTHON) -m venv $(VENV) && $(PY) -m pip install -q --disable-pip-version-check -e '.[notebook]' && touch $@; \
	fi

venv: $(VENV)/.installed

notebook-venv: $(VENV)/.notebook

# The other Pythons `requires-python` promises: every test that needs no container engine or browser
# (JINDR_TEST_SCOPE=no-engines deselects the rest), before the whole suite on the main one, whose
# run writes the reliability counts. A missing interpreter fails under CI=1, else is reported.
OTHER_PYTHONS ?= 3.12 3.13

test: deps venv lint
	@for v in $(OTHER_PYTHONS); do \
	  py=""; for c in $$(command -v python$$v) $$(ls -d $$HOME/.pyenv/versions/$$v.*/bin/python$$v 2>/dev/null | sort -Vr); do \
	    if "$$c" -c "import sys" >/dev/null 2>&1; then py=$$c; break; fi; \
	  done; \
	  if [ -z "$$py" ]; then \
	    if [ -n "$$CI" ]; then echo "python$$v is missing (requires-python promises it)"; exit 1; fi; \
	    echo "python$$v not found: its tests are not run here"; continue; \
	  fi; \
	  $(MAKE) --no-print-directory VENV=$(VENV)-$$v BASE_PYTHON=$$py venv || exit 1; \
	  echo "== Python $$v: tests that need no container engine or browser"; \
	  JINDR_TEST_SCOPE=no-engines $(VENV)-$$v/bin/python -m pytest -q -p no:cacheprovider || exit 1; \
	done
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check jindr_nb tests tools
	$(VENV)/bin/ruff format --check jindr_nb tests tools
	$(VENV)/bin/mypy

bench:
	$(MAKE) deps EXTRA_APT="$(BENCH_PACKAGES)"
	$(MAKE) venv
	# Bytecode, as `pip install` leaves it (an editable install under PYTHONDONTWRITEBYTECODE has none).
	$(PY) -m compileall -q jindr_nb
	$(PY) tests/benchmarks/run.py
	$(PY) tests/benchmarks/copybench.py
	$(PY) tests/benchmarks/loadbench.py
	$(PY) tests/benchmarks/demobench.py
	$(PY) tests/benchmarks/s3bench.py --out tests/benchmarks/results-s3.md
	$(PY) tools/readme.py

clean:
	rm -rf $(VENV) .pytest_cache build dist

readme: venv
	$(PY) tools/readme.py

# The quick start, headless: set up, run the notebook (it starts, loads, lists, deletes, collects, stops).
demo: $(VENV)/.notebook
	@if ! command -v docker-registry >/dev/null && ! command -v registry >/dev/null && \
	   ! (command -v docker >/dev/null && docker info >/dev/null 2>&1); then $(MAKE) deps APT_PACKAGES=docker-registry; fi
	cd notebooks && $(abspath $(PY)) ../tools/run_notebook.py quickstart.ipynb

# JupyterLab on the notebooks. LAB_ARGS goes to `jupyter lab` as is, e.g.
#   make lab LAB_ARGS="--ip=127.0.0.1 --port=8899 --IdentityProvider.token=secret --no-browser"
# --allow-root is added when run as root, --no-browser when there is no display to open a browser on.
LAB_ARGS ?=
LAB_FLAGS = $(if $(filter 0,$(shell id -u)),--allow-root) \
  $(if $(DISPLAY)$(WAYLAND_DISPLAY)$(filter Darwin,$(shell uname)),,--no-browser)
lab: $(VENV)/.notebook
	cd notebooks && exec $(abspath $(VENV))/bin/jupyter lab $(strip $(LAB_FLAGS) $(LAB_ARGS))

samples: $(VENV)/.notebook
	$(PY) notebooks/data/make_samples.py

notebooks: $(VENV)/.notebook
	$(PY) tools/make_notebooks.py
