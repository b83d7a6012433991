# rxledger developer entry points. `make up` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
PIP_STAMP := $(VENV)/.rxledger-pip-stamp
NPM_STAMP := node_modules/.rxledger-npm-stamp

# First python3 on PATH that is >= 3.11 (override with `make PYTHON=/path/to/python3.12`).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	  && { command -v $$p; break; }; done)

.PHONY: help bootstrap deps system-packages contracts contracts-check up down test test-slow-chain lint bench clean

help:
	@echo "make up         devnet + contracts + demo data + API (foreground; Ctrl-C stops)"
	@echo "make down       stop what 'make up' started (from another shell)"
	@echo "make test       lint, type-check and run every test (and the slow-chain journey)"
	@echo "make bootstrap  .venv, node_modules and the tests' system packages (fast no-op when up to date)"
	@echo "make contracts  rebuild contracts/artifacts from contracts/src"
	@echo "make lint       ruff + mypy only"
	@echo "make bench      every benchmark (scripts/bench, about 40 min): docs/BENCHMARKS.md, bench/results.json"
	@echo "make clean      remove caches, local chain state (var/) and the devnet manifest"

$(PY):
	@test -n "$(PYTHON)" || { echo "error: Python >= 3.11 not found (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last install.
$(PIP_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# `npm ci` only when the lockfile changed since the last install.
$(NPM_STAMP): package-lock.json
	@command -v node >/dev/null || { echo "error: Node >= 20 is required"; exit 1; }
	npm ci --no-audit --no-fund
	@touch $@

# Python and Node dependencies: all that `make up` needs.
deps: $(PIP_STAMP) $(NPM_STAMP)

# What the tests need besides: PostgreSQL's server, Chromium, fonts (scripts/bootstrap-system installs
# them as root with apt, or names the one command to run).
system-packages:
	@scripts/bootstrap-system

bootstrap: deps system-packages

contracts: deps
	$(VENV)/bin/rxledger contracts build

contracts-check: deps
	$(VENV)/bin/rxledger contracts check

up: deps
	$(VENV)/bin/rxledger up

down: deps
	$(VENV)/bin/rxledger down

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy node api bench tests

# Two processes, one test file at a time each (a file's fixtures stay in one process): CI has 2 cores,
# and most tests wait on a chain, a browser or a database. `make test PYTEST_WORKERS=0` runs in one.
PYTEST_WORKERS ?= 2

test: bootstrap lint
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=20
	$(MAKE) --no-print-directory test-slow-chain

# The journey again on Anvil mining every 2 s with the genesis' gas limit, as on Besu QBFT: late
# receipts, a pending pool. `RXLEDGER_TEST_BLOCK_TIME=2 .venv/bin/pytest tests/api` runs all of it.
test-slow-chain: bootstrap
	RXLEDGER_TEST_BLOCK_TIME=2 $(VENV)/bin/pytest -m slow_chain

bench: deps
	scripts/bench

clean:
	@if [ -x $(VENV)/bin/rxledger ] && [ -f var/up.pid ]; then $(VENV)/bin/rxledger down; fi
	# var/keystore is left alone on purpose: keys are not a cache.
	rm -rf var/devnet var/rxledger.db var/up.pid deployments/31337.json
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -path ./node_modules -prune -o -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 \
	  | xargs -0 rm -rf
