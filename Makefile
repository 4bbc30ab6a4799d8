# Outrider developer entry points. `make run` and `make test` work on a fresh Debian
# machine with Python 3.11: they create .venv and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= examples/outrider.toml

.PHONY: run test lint typecheck unit bench clean system-deps soak fuzz

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

# Debian packages the test suite needs: Chromium for the web monitor's browser test
# (driven by Playwright from the venv; no browser download). The relay benchmark
# installs postfix itself.
system-deps:
	@test -x /usr/bin/chromium || { echo "installing chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit tests/fuzz

# Fuzz the parsers with over a million inputs in all, and the daemon under fuzzed
# sessions (docs/security.md#fuzzing): one pytest per target, FUZZ_JOBS at a time; prints
# the inputs run per target. Failing inputs are kept in tests/fuzz/corpus/examples and
# replayed first by every later run, `make unit` too.
FUZZ_JOBS ?= 2
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m tests.fuzz.run --jobs $(FUZZ_JOBS)

test: $(STAMP) system-deps lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(STAMP)
	bench/relay.sh

# Soak (bench/README.md): mixed load with kill -9 and restart; not part of `make test`.
# A short run: make soak SOAK_MINUTES=3 SOAK_KILL_EVERY=40
SOAK_MINUTES ?= 20
SOAK_KILL_EVERY ?= 120
soak: $(STAMP)
	$(BIN)/python bench/soak.py --minutes $(SOAK_MINUTES) --kill-every $(SOAK_KILL_EVERY)

clean:
	rm -rf $(VENV) var build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
