# Two commands matter (see README): `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TJCTL := $(VENV)/bin/tjctl
# The virtualenv is rebuilt when a pyproject.toml changes (the product's, the dev tools').
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml devcluster/pyproject.toml | sha1sum | cut -c1-12)
DEMO_DATA ?= ./shared-data

.PHONY: venv demo test lint typecheck unit cluster-tests node-tests cluster-tools node-deps images browser postgres bench clean

# The test environment is requirements-dev.lock (images/pin-constraints.py writes it): every
# file checked against its SHA-256 (--require-hashes), the pinned pip first, the project
# last without dependencies.
$(STAMP): pyproject.toml devcluster/pyproject.toml requirements-dev.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r <(grep '^pip==' requirements-dev.lock)
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock || { echo \
		"error: requirements-dev.lock does not fit this Python ($$($(PY) -V)); it covers the" \
		"interpreters its header names; regenerate it: $(PY) images/pin-constraints.py"; exit 1; }
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . -e ./devcluster
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

demo: $(STAMP)
	SHARED_DATA_PATH=$(DEMO_DATA) $(TJCTL) dataset synth --timeframe 15m --rows 20000
	SHARED_DATA_PATH=$(DEMO_DATA) $(TJCTL) run -f manifests/examples/trainingjob-demo.yaml \
		--name demo-$$(date +%Y%m%d-%H%M%S)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy cli/tjctl contract/tjcontract core trainer-image/tjtrainer operator/tjoperator ui/tjui devcluster/tjdevcluster bench

cluster-tools: $(STAMP)
	$(TJCTL) cluster-tools

unit: $(STAMP) postgres
	$(PY) -m pytest -m 'not cluster and not node' -q

cluster-tests: cluster-tools postgres
	$(PY) -m pytest -m cluster -q

# The real-node tier (root): Debian's containerd, runc, CNI plugins, docker.io, debootstrap.
node-deps:
	bash scripts/install-node-deps.sh

# The images (trainer, operator, the chart's PostgreSQL), built with no network against a
# base made from Debian packages (root).
images: $(STAMP) node-deps
	$(TJCTL) images build

node-tests: cluster-tools images
	$(PY) -m pytest -m node -q

# Debian's Chromium for the UI's browser test (installed once, needs root or sudo).
browser:
	bash scripts/install-chromium.sh

# Debian's PostgreSQL 15 server binaries: the tests start and stop their own throwaway
# servers with them (tests/conftest.py, tjdevcluster.postgres; installed once, needs root).
postgres:
	bash scripts/install-postgres.sh

test: lint typecheck cluster-tools browser postgres images
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/train_throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# A kind cluster with the chart installed (docs/INSTALL.md); needs docker, kind, kubectl, helm.
.PHONY: kind-up kind-down
kind-up:
	scripts/kind-up.sh

kind-down:
	scripts/kind-down.sh

# The kind tier (tests/kind): make kind-up, the example to Succeeded with live columns, the
# UI, a cancel, make kind-down leaving nothing running. Without Docker it needs root and
# builds a node image here. Not part of `make test` (docs/INSTALL.md has the figures).
.PHONY: kind-e2e
kind-e2e: $(STAMP)
	$(PY) -m pytest -m kind -q
