# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv first.
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv demo test up down status lint check-templates bench toc notebooks clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.11 is required (none found on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(STAMP) ## create .venv with the pinned packages and the clickstream package

demo: venv ## start the local stack and run the main job end to end
	$(BIN)/clickstream demo

test: venv ## run every test and notebook (starts its own private stack)
	$(BIN)/python -m pytest

up: venv ## start the local stack
	$(BIN)/clickstream up

down: venv ## stop the local stack (data is kept)
	$(BIN)/clickstream down

status: venv ## health of the local stack
	$(BIN)/clickstream status

lint: venv ## cfn-lint the CloudFormation templates
	$(BIN)/cfn-lint cloudformation/*.yaml

check-templates: venv ## cfn-lint, policy rules and architecture checks on TEMPLATES_DIR (default cloudformation)
	@status=0; \
	$(BIN)/cfn-lint -- $(or $(TEMPLATES_DIR),cloudformation)/*.yaml || status=1; \
	$(BIN)/python -m clickstream.infra.checks $(or $(TEMPLATES_DIR),cloudformation) || status=1; \
	exit $$status

bench: venv ## run the benchmarks (figures go into the README)
	$(BIN)/python benchmarks/ingest_throughput.py
	$(BIN)/python benchmarks/etl_load.py

toc: venv ## regenerate the README's table of notebooks and each notebook's navigation from their file names
	$(BIN)/python notebooks/make_toc.py --readme README.md --nav

notebooks: venv ## execute the notebooks on a fresh private stack and render them to build/notebooks/ (HTML, index)
	$(BIN)/python notebooks/render.py

clean: ## remove the venv (keeps .clickstream data)
	rm -rf $(VENV)
