# Hereabouts — two commands set everything up on a fresh Debian/Ubuntu machine:
#   make run    the service with demo data on an embedded PostGIS (http://127.0.0.1:8000/docs)
#   make test   lint, types, migrations check and the whole test suite on a real PostGIS
#   make test-citus   the core flows again on a Citus coordinator + 2 workers (docs/scaling.md)
SHELL := /bin/bash
UV ?= $(shell bash scripts/ensure-uv.sh)
PYTEST_ARGS ?=

.PHONY: run test test-citus citus-deps lint typecheck pytest deps system-deps bench worker clean-data fmt

# Compiled to bytecode once here: with PYTHONDONTWRITEBYTECODE set (as on many CI machines)
# Python never writes a cache, so every process compiled all of its imports from source again,
# ~2 s of CPU for each `serve`, CLI and worker process the tests start (dozens per run).
deps:
	@$(UV) sync --frozen --quiet --compile-bytecode
	@$(UV) run --frozen python -m compileall -q -j 0 app >/dev/null

# Server binaries (PostgreSQL, PostGIS) are installed on demand by the cluster manager itself;
# the browser tests need Chromium from the distribution (no browser downloads).
system-deps:
	@bash scripts/system-deps.sh

run: deps
	$(UV) run hereabouts serve --demo

worker: deps
	$(UV) run hereabouts worker

lint: deps
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: deps
	$(UV) run mypy app tests bench

fmt: deps
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

pytest: deps system-deps
	$(UV) run pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The core flows (places, batched and single pings with events, single fixes answered 202 and
# their evaluator, a kill -9 mid-set too, check-ins with offers and tasks, rules to outbox,
# who is at a place (a broadcast, a task's visit, a worker's current place), the field workers
# near an Open311 report, delivery workers claiming with SKIP LOCKED, export and erase,
# retention, token revocation) on a local Citus cluster under .data/test-citus*
# (docs/scaling.md).
# Ports: HEREABOUTS_TEST_CITUS_PORTS (coordinator,worker,worker).
CITUS_TESTS ?= tests/core/test_citus.py tests/geofences/test_import.py \
	tests/presence/test_smoke.py tests/presence/test_tracks.py tests/presence/test_concurrency.py \
	tests/presence/test_groups.py tests/presence/test_async_pings.py \
	tests/presence/test_evaluator_crash.py tests/checkins/test_checkin_offers_and_tasks.py \
	tests/rules/test_walk.py tests/rules/test_async_walk.py tests/rules/test_set_based.py \
	tests/rules/test_workers_and_broadcast.py tests/open311/test_tasks_and_push.py \
	tests/shifts/test_supervisor.py tests/tasks/test_visits_and_photos.py \
	tests/notifications/test_worker.py \
	tests/security/test_subject_rights.py tests/security/test_retention.py \
	tests/accounts/test_token_cache.py tests/core/test_commit_retrying.py
# Citus is built from its vendored upstream source (third_party/citus) when missing: root on
# Debian/Ubuntu, about 3 minutes once; a no-op when installed (scripts/install-citus.sh).
citus-deps: system-deps
	@bash scripts/install-citus.sh >/dev/null

test-citus: deps citus-deps
	HEREABOUTS_TEST_CITUS=1 $(UV) run pytest $(CITUS_TESTS) $(PYTEST_ARGS)

bench: deps system-deps
	$(UV) run python -m bench.run
	$(UV) run python -m bench.quality

# refuses (exit status 3) while `serve` runs on .data, rather than deleting data under it
clean-data:
	@$(UV) run hereabouts db stop; rc=$$?; if [ $$rc -eq 3 ]; then exit 3; fi
	rm -rf .data
