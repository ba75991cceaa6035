# tokenscale — every entry point a developer or CI uses.
# The virtual environment is created on first use, so `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml contract/pyproject.toml sim/pyproject.toml worker_image/pyproject.toml | sha1sum | cut -c1-12)
DEMO_OUT ?= out

.PHONY: demo demo-live test setup unit lint generate verify e2e bench cluster-up cluster-down venv clean contract

venv: $(STAMP)

$(STAMP): pyproject.toml contract/pyproject.toml sim/pyproject.toml worker_image/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./contract -e ./sim -e ./worker_image -e '.[dev,bench]'
	@rm -f $(VENV)/.installed-*; touch $@

## setup: install or build every tool the tests use, once (Prometheus, the cluster binaries, Helm,
## real vLLM's CPU build); resumable, with progress lines; tests never install or build
setup: venv
	bash hack/setup.sh

## demo: the main job on the embedded default workload
demo: venv
	@mkdir -p $(DEMO_OUT)
	$(BIN)/tokenscale bench --json $(DEMO_OUT)/demo.json --plot $(DEMO_OUT)/demo.png

## lint: ruff, mypy --strict (pydantic plugin) and the layer contracts
lint: venv
	$(BIN)/ruff check operator contract sim worker_image tests e2e hack
	$(BIN)/ruff format --check operator contract sim worker_image tests e2e hack
	$(BIN)/mypy
	$(BIN)/lint-imports

## generate: regenerate CRDs and chart CRD templates from the pydantic models
generate: venv
	$(BIN)/tokenscale crds
	bash hack/manifests.sh

## verify: fail when generated files drift from their sources (Helm renders the GitOps manifests)
verify: setup
	$(BIN)/tokenscale crds --check
	bash hack/manifests.sh --check

## unit: unit, integration (real Prometheus, real HTTP) and vLLM contract tests; no cluster
unit: setup
	$(BIN)/pytest -q

## contract: launcher arguments checked by vLLM's own parser (cached environment)
contract: setup
	$(BIN)/pytest -q -m contract tests/worker

## e2e: scenarios on a real local cluster (started if needed)
e2e: setup
	$(BIN)/pytest -q -m e2e e2e

## bench: the autoscaling targets on the embedded workload and the Azure trace (exit 1 on a miss,
## and on a missing Azure trace where ../shared/data exists, as in CI); no cluster
bench: venv
	$(BIN)/tokenscale bench --check-targets

## cluster-up / cluster-down: the local control plane with fake GPU nodes
cluster-up:
	bash e2e/cluster/build.sh
	bash e2e/cluster/up.sh

cluster-down:
	bash e2e/cluster/down.sh

## demo-live: the operator on the local cluster (started or reused) through a scripted
## calm -> burst -> calm day, live in the terminal; summary and timeline.png in $(DEMO_OUT)/demo-live
demo-live: setup
	$(BIN)/tokenscale demo --out $(DEMO_OUT)/demo-live

## test: everything CI checks (set-up first, so no test waits on a build)
test: setup lint verify unit e2e

clean:
	rm -rf $(VENV) $(DEMO_OUT) .mypy_cache .ruff_cache .pytest_cache
