# Two commands for a new user: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test lint typecheck pytest nodetest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/signalpush demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check server publishers tests
	$(BIN)/ruff format --check server publishers tests

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy server publishers

pytest: $(VENV)/.installed-test
	$(BIN)/python -m pytest

nodetest:
	@if [ -f client_js/package.json ]; then \
		cd client_js && npm ci --no-audit --no-fund --silent && node --test tests/; \
	fi

test: lint typecheck pytest nodetest

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
