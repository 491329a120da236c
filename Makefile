# nanofaas: `make up` starts the platform, `make test` runs every test.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := proto/python runtimes/python services/registry services/scheduler services/gateway
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: up test lint proto proto-check venv clean

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

lint: $(BIN)/.dev
	$(BIN)/tox run -e lint

proto: $(BIN)/.dev
	$(BIN)/python scripts/gen_proto.py

proto-check: $(BIN)/.dev
	$(BIN)/python scripts/gen_proto.py --check

clean:
	rm -rf $(VENV) .tox .mypy_cache .ruff_cache .pytest_cache
