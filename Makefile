# Two commands for a fresh machine: `make dev` (set up, run the stack) and `make test` (set up, test).
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: dev test setup system templates clean

setup: $(STAMP) system

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

# Debian packages the sandbox and the tests use, installed where missing.
system:
	@sh devstack/install-system-packages.sh

dev: setup
	$(VENV)/bin/python -m devstack

test: setup
	$(VENV)/bin/python -m pytest

templates: setup
	$(VENV)/bin/python -m devstack.templates

clean:
	rm -rf $(VENV) .devstack .pytest_cache
