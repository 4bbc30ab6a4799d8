# Outrider developer entry points. `make run` and `make test` work on a fresh Debian
# machine with Python 3.11: they create .venv and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= examples/outrider.toml

.PHONY: run test lint typecheck unit bench clean system-deps soak fuzz install mutate

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
# (driven by Playwright from the venv; no browser download) and logrotate for the
# packaged rotation snippet's test. The relay benchmark installs postfix itself.
SYSTEM_PACKAGES := chromium:/usr/bin/chromium logrotate:/usr/sbin/logrotate redis-server:/usr/bin/redis-server
system-deps:
	@missing=""; for entry in $(SYSTEM_PACKAGES); do \
	  test -x "$${entry#*:}" || missing="$$missing $${entry%%:*}"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

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

# Mutation testing (docs/testing.md): mutmut, module by module against its own unit tests,
# then a score table; not part of `make test`. Long: pick modules, or cap each one:
#   make mutate MODULES="spool/codec.py policy/rate.py" MUTATE_MINUTES=5
MODULES ?=
MUTATE_MINUTES ?= 0
mutate: $(STAMP)
	@$(BIN)/python -c 'import mutmut' 2>/dev/null || $(BIN)/pip install -q -e '.[test,mutate]'
	nice -n 10 $(BIN)/python -m tests.mutation.run --minutes $(MUTATE_MINUTES) $(MODULES)

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

# Install as a service (docs/operations.md#running-as-a-service), as root: Outrider in a
# venv under PREFIX, `outrider` linked into BINDIR, the systemd unit, the logrotate
# snippet, the config (only if absent), the outrider system user and its directories.
# DESTDIR=DIR stages every file under DIR instead, without the user, chown or systemctl
# (for tests; the venv's scripts then name DIR, so stage where it will run).
PREFIX ?= /opt/outrider
BINDIR ?= /usr/local/bin
SYSCONFDIR ?= /etc/outrider
UNITDIR ?= /etc/systemd/system
LOGROTATEDIR ?= /etc/logrotate.d
SPOOLDIR ?= /var/spool/outrider
LOGDIR ?= /var/log/outrider
STATEDIR ?= /var/lib/outrider
SERVICE_USER ?= outrider
PIP_INSTALL_ARGS ?=
PACKAGING_SED = sed -e 's|/usr/local/bin/outrider|$(BINDIR)/outrider|g' \
  -e 's|/etc/outrider/|$(SYSCONFDIR)/|g' -e 's|/var/spool/outrider|$(SPOOLDIR)|g' \
  -e 's|/var/log/outrider|$(LOGDIR)|g' -e 's|/var/lib/outrider|$(STATEDIR)|g' \
  -e 's|^User=outrider$$|User=$(SERVICE_USER)|' -e 's|^Group=outrider$$|Group=$(SERVICE_USER)|' \
  -e 's| outrider outrider$$| $(SERVICE_USER) $(SERVICE_USER)|'

install:
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" != 0 ]; then \
	  echo "make install: run it as root (or stage the files with DESTDIR=DIR)" >&2; exit 1; fi
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "installing python3-venv"; apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(DESTDIR)$(PREFIX)
	$(DESTDIR)$(PREFIX)/bin/python -m pip install -q --disable-pip-version-check $(PIP_INSTALL_ARGS) .
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(LOGROTATEDIR)
	ln -sfn $(PREFIX)/bin/outrider $(DESTDIR)$(BINDIR)/outrider
	@$(PACKAGING_SED) packaging/outrider.service > $(DESTDIR)$(UNITDIR)/outrider.service
	@$(PACKAGING_SED) packaging/outrider.logrotate > $(DESTDIR)$(LOGROTATEDIR)/outrider
	@chmod 0644 $(DESTDIR)$(UNITDIR)/outrider.service $(DESTDIR)$(LOGROTATEDIR)/outrider
	@echo "installed $(UNITDIR)/outrider.service and $(LOGROTATEDIR)/outrider"
	@if [ -z "$(DESTDIR)" ] && ! getent passwd $(SERVICE_USER) >/dev/null; then \
	  echo "creating the system user $(SERVICE_USER)"; \
	  useradd --system --user-group --home-dir $(STATEDIR) --no-create-home \
	    --shell /usr/sbin/nologin --comment "Outrider MTA" $(SERVICE_USER); fi
	install -d -m 0750 $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(LOGDIR) $(DESTDIR)$(STATEDIR)
	install -d -m 0700 $(DESTDIR)$(SPOOLDIR)
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/outrider.toml ]; then \
	  echo "keeping the existing $(SYSCONFDIR)/outrider.toml"; \
	else \
	  $(PACKAGING_SED) packaging/outrider.toml > $(DESTDIR)$(SYSCONFDIR)/outrider.toml.new && \
	  chmod 0640 $(DESTDIR)$(SYSCONFDIR)/outrider.toml.new && \
	  mv $(DESTDIR)$(SYSCONFDIR)/outrider.toml.new $(DESTDIR)$(SYSCONFDIR)/outrider.toml && \
	  echo "installed $(SYSCONFDIR)/outrider.toml"; fi
	@if [ -z "$(DESTDIR)" ]; then \
	  chown $(SERVICE_USER):$(SERVICE_USER) $(SPOOLDIR) $(LOGDIR) $(STATEDIR) && \
	  chown root:$(SERVICE_USER) $(SYSCONFDIR) $(SYSCONFDIR)/outrider.toml && \
	  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; fi
	@echo "Outrider is installed in $(PREFIX). Next:"
	@echo "  edit $(SYSCONFDIR)/outrider.toml (hostname, postmaster, listeners, relay-networks)"
	@echo "  $(BINDIR)/outrider check-config -c $(SYSCONFDIR)/outrider.toml"
	@echo "  systemctl enable --now outrider"

clean:
	rm -rf $(VENV) var build dist .mutmut src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
