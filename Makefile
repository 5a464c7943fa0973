# Two commands for a new user: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test quicktest lint jslint typecheck pytest nodetest schema clean
NODE_MODULES := client_js/node_modules/.installed

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

$(NODE_MODULES): client_js/package-lock.json
	cd client_js && npm ci --no-audit --no-fund --silent
	touch $@

lint: $(VENV)/.installed-test jslint
	$(BIN)/ruff check server publishers tests
	$(BIN)/ruff format --check server publishers tests

# Biome (pinned in client_js/package.json): lint rules and formatting of the JS client and wall.
jslint: $(NODE_MODULES)
	cd client_js && node_modules/.bin/biome check .

# The event schema as JSON beside the JS (tests/publishers/test_schema.py checks it is current).
schema: $(VENV)/.installed
	$(BIN)/python -c "from publishers.events import schema_json_text as s; print(s(), end='')" > client_js/events-schema.json

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy server publishers

# Two workers (the machine's two cores): each has its own Redis database and PostgreSQL
# database (tests/support/workers.py). PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= 2
pytest: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS)

nodetest: $(NODE_MODULES)
	cd client_js && node --test tests/

test: lint typecheck pytest nodetest

# The fast loop while working: no slow scenarios, no browser, embedded Redis and SQLite only,
# two pytest workers. The whole suite (make test) is what CI runs.
quicktest: $(VENV)/.installed-test
	env -u SIGNALPUSH_TEST_REDIS_URL -u SIGNALPUSH_TEST_DATABASE_URL -u SIGNALPUSH_TEST_STRICT \
		$(BIN)/python -m pytest -q -m "not slow and not browser" -n 2

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
