# Postwerk developer entry points. `make run` brings the whole platform up on embedded defaults
# (SQLite + filesystem broker under ./var); set DATABASE_URL / CELERY_BROKER_URL for the production mode.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

VENV := .venv
PY := $(VENV)/bin/python
# Touched after a successful install, so the venv is rebuilt only when the dependency files change.
STAMP := $(VENV)/.installed

# The first interpreter >= 3.11 (pyproject's requires-python). A version check, not just `command -v`,
# because pyenv shims exist for versions that are not active and fail when run.
define find_python
py=""; \
for c in python3.13 python3.12 python3.11 python3; do \
  if command -v $$c >/dev/null 2>&1 && $$c -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
    py=$$c; break; \
  fi; \
done; \
if [ -z "$$py" ]; then echo "error: Python >= 3.11 not found (tried python3.13 python3.12 python3.11 python3)" >&2; exit 1; fi
endef

.DEFAULT_GOAL := help
.PHONY: help venv run test lint bench bench-soak bench-smtp bench-throughput bounce-report bench-streams lock clean

help:
	@echo "make run    migrate, then start web + worker + beat (Ctrl-C stops them all)"
	@echo "make test   run the test suite (PYTEST_ARGS='-k name -x' to pass options)"
	@echo "make lint   ruff check + ruff format --check + import contracts (lint-imports)"
	@echo "make bench  send-API benchmark (BENCH_ARGS=...)"
	@echo "make bench-smtp  SMTP submission benchmark (BENCH_ARGS=...)"
	@echo "make bench-soak  10-minute steady API + SMTP load: memory, latency drift, errors (BENCH_ARGS=...)"
	@echo "make bench-throughput  Postwerk (API in, SMTP in) beside a private Postfix; needs root (BENCH_ARGS=...)"
	@echo "make bounce-report  bounce classifier on tests/data/bounces: rates per family and reason, goals, speed"
	@echo "make bench-streams  transactional latency behind 20,000 queued broadcast messages (BENCH_ARGS=...)"
	@echo "make lock   regenerate constraints.txt from a fresh venv"
	@echo "make clean  remove var/ (embedded database, broker, generated secrets)"

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(find_python); \
	if [ ! -x $(PY) ]; then echo "creating $(VENV) with $$py"; $$py -m venv $(VENV); fi
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

run: venv
	$(PY) manage.py migrate --noinput
	exec platform/dev-run

# The OpenID Connect provider the single sign-on browser test signs in through (npm's oidc-provider, pinned by
# its package-lock.json); without npm that one test fails and says why.
OIDC_PROVIDER := tests/servers/oidc_provider
$(OIDC_PROVIDER)/node_modules/.installed: $(OIDC_PROVIDER)/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix $(OIDC_PROVIDER) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "note: npm is missing: the single sign-on browser test will fail (apt-get install nodejs npm)"; fi

# axe-core (npm, pinned by its package-lock.json): the accessibility test injects it into dashboard pages through
# Playwright; Postwerk never serves it. Without npm the accessibility test fails and says why.
AXE := tests/servers/axe
$(AXE)/node_modules/.installed: $(AXE)/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix $(AXE) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "note: npm is missing: the accessibility browser test will fail (apt-get install nodejs npm)"; fi

test: venv $(OIDC_PROVIDER)/node_modules/.installed $(AXE)/node_modules/.installed
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Both checks run even when the first fails, so one pass shows everything to fix.
lint: venv
	@rc=0; \
	$(VENV)/bin/ruff check . || rc=1; \
	$(VENV)/bin/ruff format --check . || rc=1; \
	$(VENV)/bin/lint-imports || rc=1; \
	$(PY) -m dashboard.vendor check || rc=1; \
	exit $$rc

bench: venv
	$(PY) bench/send_api.py $(BENCH_ARGS)
bench-soak: venv
	$(PY) bench/soak.py $(BENCH_ARGS)
bench-smtp: venv
	$(PY) bench/smtp_ingest.py $(BENCH_ARGS)
# Issue #6: Postwerk (API in, SMTP in) and a private Postfix side by side; needs root and Debian's postfix.
bench-throughput: venv
	$(PY) bench/throughput.py $(BENCH_ARGS)
# Issue #23: transactional mail's accept -> delivered p99 with a broadcast backlog, against an idle platform.
bench-streams: venv
	$(PY) bench/stream_priority.py $(BENCH_ARGS)

# Issue #20: the classifier against its labelled corpus (a bench, not a timed test).
bounce-report: venv
	$(PY) bench/bounce_report.py $(BENCH_ARGS)

# Resolve the newest versions pyproject allows in a throwaway venv, so nothing stale from .venv leaks in;
# written through a temporary file so a failed resolve never truncates constraints.txt.
lock:
	@$(find_python); \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$$py -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/pip" install --quiet --disable-pip-version-check -e '.[dev]'; \
	"$$tmp/venv/bin/pip" freeze --exclude-editable > "$$tmp/constraints.txt"; \
	mv "$$tmp/constraints.txt" constraints.txt; \
	echo "constraints.txt: $$(wc -l < constraints.txt) pins"

clean:
	rm -rf var/
