# The two commands of the README:
#   make up     set up this machine and run the platform (NATS, store, gateway, node agent)
#   make test   set up this machine and run lint, type checks and every test tier
# Both are idempotent: a second run only does what is missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup up test lint typecheck pytest deploy-test bench experiments clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

setup: $(VENV)/.installed
	bash scripts/ensure-docker.sh
	bash scripts/build-images.sh

up: setup
	$(BIN)/faas up

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

# The fuzz test's seed: fixed, so that make test is repeatable; FAAS_FUZZ_SEED= (empty) draws one.
FAAS_FUZZ_SEED ?= 1392924951

# FAAS_REQUIRE_*=1: tests needing Docker, ansible or PostgreSQL fail instead of skipping without
# them (the dashboard's browser tests too, without chromium). The store's PostgreSQL tests use the
# server scripts/ensure-postgres.sh set up (it prints its URL).
pytest: setup
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-browser.sh
	FAAS_TEST_POSTGRES_URL="$$(bash scripts/ensure-postgres.sh 2>/dev/null | tail -n 1)" FAAS_REQUIRE_POSTGRES=1 \
	FAAS_REQUIRE_DOCKER=1 FAAS_REQUIRE_ANSIBLE=1 FAAS_REQUIRE_DEPLOY=$(FAAS_REQUIRE_DEPLOY) \
	FAAS_FUZZ_SEED=$(FAAS_FUZZ_SEED) \
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -q -ra

test: setup lint typecheck pytest

# The Ansible deployment on six systemd hosts made here, and its checks (tests/deploy/README.md);
# about 7 minutes. It runs within `make pytest` / `make test` too; FAAS_REQUIRE_DEPLOY=0 skips it there.
FAAS_REQUIRE_DEPLOY ?= 1
deploy-test: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m tests.deploy

# One benchmark run (figures against targets, JSON in bench/out/); options: python -m bench.run -h
bench: setup
	$(BIN)/python -m bench.run

# Every policy on one workload, one CSV row per call, figures (experiments/out/); needs matplotlib
$(VENV)/.bench: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

experiments: setup $(VENV)/.bench
	$(BIN)/python -m experiments

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache
