# job-scheduler — every target installs what it needs when it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
TOOLS := .tools
UV_VERSION := 0.13.9
BUF_VERSION := 1.75.0
UV := $(TOOLS)/venv/bin/uv
# apt needs root: sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BUF := $(TOOLS)/node_modules/.bin/buf
VENV := .venv
PROTO_FILES := $(wildcard proto/jobscheduler/v1/*.proto) proto/externalscaler/externalscaler.proto
STUB_PACKAGES := jobscheduler externalscaler
STUBS_DIR := libs/proto

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help setup proto proto-check lint test browser run bench bench-scale bench-retention bench-flow bench-lists plans chaos services clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)/venv
	$(TOOLS)/venv/bin/pip install --quiet uv==$(UV_VERSION)

$(BUF):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf@$(BUF_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml libs/proto/pyproject.toml libs/client/pyproject.toml libs/cli/pyproject.toml libs/common/pyproject.toml services/api/pyproject.toml services/worker/pyproject.toml services/console/pyproject.toml
	$(UV) sync --all-packages --frozen
	touch $@

setup: $(VENV)/.synced $(BUF)  ## Install the Python workspace (uv), buf and grpcurl.

proto: $(VENV)/.synced  ## Regenerate the gRPC stubs and .pyi files from proto/.
	rm -f $(STUBS_DIR)/jobscheduler/v1/*_pb2*.py $(STUBS_DIR)/jobscheduler/v1/*_pb2*.pyi
	rm -f $(STUBS_DIR)/externalscaler/*_pb2*.py $(STUBS_DIR)/externalscaler/*_pb2*.pyi
	$(UV) run --frozen python -m grpc_tools.protoc -I proto \
		--python_out=$(STUBS_DIR) --grpc_python_out=$(STUBS_DIR) \
		--mypy_out=$(STUBS_DIR) --mypy_grpc_out=$(STUBS_DIR) $(PROTO_FILES)

proto-check: proto  ## Fail if the committed stubs differ from a fresh generation.
	git diff --exit-code -- $(addprefix $(STUBS_DIR)/,$(STUB_PACKAGES))
	@test -z "$$(git status --porcelain -- $(addprefix $(STUBS_DIR)/,$(STUB_PACKAGES)))" || { echo "untracked stubs"; exit 1; }

lint: setup  ## ruff, mypy --strict and buf lint (and buf breaking against main when it exists).
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy
	$(BUF) lint
	@if git rev-parse --verify -q origin/main >/dev/null; then $(BUF) breaking --against '.git#branch=origin/main'; fi

services:  ## Start the local PostgreSQL and Redis if they are not running.
	@scripts/ensure-services.sh

browser:  ## Install Debian's chromium for the console's browser tests, when it is missing (with apt).
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "no chromium and no apt-get: the browser tests are skipped (under CI=true they fail)"; \
	  fi; }

test: setup services browser  ## Run the test suite against the local PostgreSQL, Redis and real processes.
	$(UV) run --frozen pytest $(PYTEST_ARGS)

run: setup services  ## Run the api and the workers (WORKER_POOL_SIZE of them) against local services.
	$(UV) run --frozen python scripts/run_local.py

bench: setup services  ## Benchmark: end-to-end throughput and dispatch latency vs bare arq.
	$(UV) run --frozen python -m bench $(BENCH_ARGS)

bench-scale: setup services  ## Capacity: 1,000 to 10,000 long calls held open in one worker (CPU, RSS, Redis, PostgreSQL, latency).
	$(UV) run --frozen python -m bench.scale $(BENCH_SCALE_ARGS)

bench-retention: setup services  ## History purge: executions deleted per second, and table sizes in a soak with a 30 s retention.
	$(UV) run --frozen python -m bench.retention $(BENCH_RETENTION_ARGS)

bench-flow: setup services  ## Queue rate limits across 3 workers: calls a second at the target, calls open at once (a worker SIGKILLed), the claim's cost.
	$(UV) run --frozen python -m bench.flow_control $(BENCH_FLOW_ARGS)

bench-lists: setup services  ## List calls: api memory and bytes answered by ListJobs (BASIC, FULL), ListExecutions, ListDeadLetters over 1 MiB bodies.
	$(UV) run --frozen python -m bench.list_memory $(BENCH_LISTS_ARGS)

plans: setup services  ## Query plans of the queue figures, dead letters, loops and purge at 1,000,000 executions.
	$(UV) run --frozen python -m bench.query_plans $(PLANS_ARGS)

chaos: setup services  ## Fault-injection suite, full scale (CHAOS_ARGS="--scale short" is CI's version).
	$(UV) run --frozen python -m chaos $(CHAOS_ARGS)

clean:  ## Remove the virtualenv and tools.
	rm -rf $(VENV) $(TOOLS)
