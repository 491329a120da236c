# nanofaas: `make up` starts the platform, `make test` runs every test.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := proto/python runtimes/python services/registry services/scheduler services/gateway clients/python
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: up test fuzz lint proto proto-check venv clean images

# The runtime environment: every package installed editable.
$(BIN)/.installed: $(PYPROJECTS) constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(addprefix -e ,$(PACKAGES))
	touch $@

# Development tools on top: tox, linters, stub generators.
$(BIN)/.dev: $(BIN)/.installed requirements-dev.txt
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

up: $(BIN)/.installed
	$(BIN)/python scripts/up.py

test: $(BIN)/.dev
	$(BIN)/tox run

# `make fuzz`: the long schemathesis run (>= 20,000 cases, ~15 min on 2 cores); `make test` runs ~2,000.
fuzz: $(BIN)/.dev
	NANOFAAS_FUZZ_EXAMPLES=2400 NANOFAAS_FUZZ_MIN_CASES=20000 $(BIN)/tox run -e e2e -- tests/e2e/test_fuzz.py

lint: $(BIN)/.dev
	$(BIN)/tox run -e lint

proto: $(BIN)/.dev
	$(BIN)/python scripts/gen_proto.py

proto-check: $(BIN)/.dev
	$(BIN)/python scripts/gen_proto.py --check

clean:
	rm -rf $(VENV) .tox .mypy_cache .ruff_cache .pytest_cache

# `make images`: nanofaas/{gateway,scheduler,registry,python-runtime}:$(TAG), on BASE_IMAGE if
# given, else on python:3.11-slim-bookworm if present or pullable, else (and with OFFLINE=1) on
# the locally bootstrapped nanofaas/base-python:bookworm. Needs a docker engine; see
# docs/containers.md.
TAG ?= dev
images:
	$(PYTHON) -m scripts.images --tag $(TAG) $(if $(BASE_IMAGE),--base-image $(BASE_IMAGE)) $(if $(OFFLINE),--offline)

# `make bench` (BENCH_QUICK=1 for a ~3 min run; BENCH_ARGS="--scenarios a,b" etc.): a separate
# virtualenv with the platform and the fake cluster (tests/fakekube: scenarios i and j) editable
# plus bench-only packages, wrk from Debian's packages.
BENCH_VENV := .venv-bench
.PHONY: bench
bench:
	@command -v wrk >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 \
		|| { echo "make bench: wrk is missing and apt-get is unavailable; install wrk 4.x yourself" >&2; exit 1; }; \
		apt-get update -qq && apt-get install -y -qq wrk; }
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q $(addprefix -e ,$(PACKAGES) tests/fakekube) -r bench/requirements.txt
	$(BENCH_VENV)/bin/python -m bench $(BENCH_ARGS)

# `make kind-up`: the platform on a local kind cluster (images built here, loaded into the node,
# the kind overlay applied, traces in Jaeger); `make kind-down` deletes the cluster. Needs docker,
# kind and kubectl, and Docker Hub for kind's node image and Jaeger. See docs/deploy.md.
KIND ?= kind
KUBECTL ?= kubectl
KIND_CLUSTER ?= nanofaas
KIND_CONTEXT := kind-$(KIND_CLUSTER)
KIND_IMAGES := gateway scheduler registry python-runtime
.PHONY: kind-up kind-down
kind-up:
	$(MAKE) images TAG=dev
	$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' \
		|| $(KIND) create cluster --name $(KIND_CLUSTER) --config deploy/kustomize/overlays/kind/kind-cluster.yaml
	for image in $(KIND_IMAGES); do $(KIND) load docker-image --name $(KIND_CLUSTER) nanofaas/$$image:dev || exit 1; done
	$(KUBECTL) --context $(KIND_CONTEXT) apply --server-side -k deploy/kustomize/overlays/kind
	$(KUBECTL) --context $(KIND_CONTEXT) -n nanofaas rollout status deployment/jaeger --timeout=300s
	$(KUBECTL) --context $(KIND_CONTEXT) -n nanofaas rollout status deployment/nanofaas --timeout=300s
	@echo "nanofaas REST:  http://127.0.0.1:8080   (e.g. curl -s http://127.0.0.1:8080/readyz)"
	@echo "Jaeger UI:      http://127.0.0.1:16686"

kind-down:
	$(KIND) delete cluster --name $(KIND_CLUSTER)
