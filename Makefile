# Outrider developer entry points. `make run` and `make test` work on a fresh Debian
# machine with Python 3.11: they create .venv and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= examples/outrider.toml

.PHONY: run test lint typecheck unit bench clean system-deps

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "installing python3-venv"; apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

run: $(STAMP)
	@mkdir -p var
	$(BIN)/outrider gen-cert --cert var/tls/cert.pem --key var/tls/key.pem --hostname mta.example.test
	$(BIN)/outrider run -c $(CONFIG)

# Debian packages the test suite needs (none beyond Python today; the relay
# benchmark installs postfix itself).
system-deps:
	@true

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit tests/fuzz

test: $(STAMP) system-deps lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(STAMP)
	bench/relay.sh

clean:
	rm -rf $(VENV) var build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
