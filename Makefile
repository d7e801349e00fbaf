# Two commands for a fresh machine: `make dev` (set up, run the stack) and `make test` (set up, test).
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: dev test setup system templates bench smoke reliability logs clean

CHECKOV := .venv-checkov/.installed-3.3.30

setup: $(STAMP) system

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements-dev.txt
	@printf '#!/bin/sh\nPYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s/$(VENV)/bin/python" -m vibesdk_cli "$$@"\n' "$(CURDIR)" "$(CURDIR)" > $(VENV)/bin/vibesdk
	@chmod +x $(VENV)/bin/vibesdk
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

# checkov (Terraform checks) has its own environment: its pins would fight the runtime's.
$(CHECKOV):
	@test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet checkov==3.3.30
	@touch $(CHECKOV)

# Debian packages the sandbox and the tests use, installed where missing.
system:
	@sh devstack/install-system-packages.sh

dev: setup
	$(VENV)/bin/python -m devstack

test: setup $(CHECKOV)
	@sh devstack/install-system-packages.sh --test
	$(VENV)/bin/python -m pytest

templates: setup
	$(VENV)/bin/python -m devstack.templates

clean:
	rm -rf $(VENV) .venv-checkov .devstack .pytest_cache .cache

bench: setup
	$(VENV)/bin/python -m bench

# make smoke URL=https://... [VIBESDK_API_TOKEN=...]: the deployment's smoke test and isolation canary, against any control plane.
URL ?= http://127.0.0.1:8080
smoke: setup
	$(VENV)/bin/python -m devstack.smoke --url $(URL)

reliability: setup
	$(VENV)/bin/python -m tests.reliability

# make logs RUN=<runId>: one run's log lines from the local stack, every unit, in order.
logs: setup
	$(VENV)/bin/python -m vibesdk_cli logs --local $(RUN)
