# Tally: the two commands of the README. Needs only Python >= 3.11 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock | cksum | cut -d' ' -f1)

.PHONY: run test lint install lock bench clean-data

$(STAMP): requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	@touch $(STAMP)

install: $(STAMP)

## make run: embedded PostgreSQL + Redis, migrate, seed demo data, web + worker + beat.
run: $(STAMP)
	$(PY) -m core.run

## make test: the whole suite against real PostgreSQL and Redis (embedded unless configured).
test: $(STAMP)
	$(PY) -m ruff check .
	TALLY_PG_FAST=1 $(PY) -m core.embedded exec -- $(PY) -m pytest $(PYTEST_ARGS)

## make lint: ruff and mypy. mypy's Django plugin loads the settings, which want the service URLs;
## it never connects, so placeholders do when none are set.
lint: $(STAMP)
	$(PY) -m ruff check .
	DATABASE_URL="$${DATABASE_URL:-postgres://unused@127.0.0.1:1/typecheck}" \
	CELERY_BROKER_URL="$${CELERY_BROKER_URL:-redis://127.0.0.1:1/0}" $(PY) -m mypy .

## make bench: the benchmarks of bench/ (each prints figures and ratios measured in one run).
bench: $(STAMP)
	$(PY) -m core.embedded exec -- $(PY) bench/ingest.py
	$(PY) -m core.embedded exec -- $(PY) -W ignore bench/rollup.py
	$(PY) -m core.embedded exec -- $(PY) bench/sdk_overhead.py

## make lock: re-resolve pyproject.toml's dependencies into requirements.lock.
lock:
	rm -rf /tmp/tally-lock-venv && $(PYTHON) -m venv /tmp/tally-lock-venv
	/tmp/tally-lock-venv/bin/pip install --quiet ".[test]"
	/tmp/tally-lock-venv/bin/pip freeze --exclude-editable | grep -v '^tally' > requirements.lock

clean-data:
	$(PY) -m core.embedded stop || true
	rm -rf .tally
