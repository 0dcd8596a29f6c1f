# The two commands of the README:
#   make up     set up this machine and run the platform (NATS, store, gateway, node agent)
#   make test   set up this machine and run lint, type checks and every test tier
# Both are idempotent: a second run only does what is missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup up test lint typecheck pytest bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
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

# FAAS_REQUIRE_*=1: tests needing Docker or ansible fail instead of skipping without them.
pytest: setup
	FAAS_REQUIRE_DOCKER=1 FAAS_REQUIRE_ANSIBLE=1 PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -q -ra

test: setup lint typecheck pytest

bench: setup
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache
