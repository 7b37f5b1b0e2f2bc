# One command runs the app, one runs the tests; each installs what it needs, once.
#   make app    create .venv, install requirements-app.txt, start the web app
#   make test   create .venv, install requirements-test.txt (+ Debian chromium), run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APP_STAMP := $(VENV)/.installed-app
TEST_STAMP := $(VENV)/.installed-test
PYTEST_ARGS ?=

.PHONY: app test test-fast bench lint clean

app: $(APP_STAMP)
	$(BIN)/python app.py

test: $(TEST_STAMP) /usr/bin/chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The default run minus the slow and browser tests, for quick iterations.
test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python bench/media.py
	$(BIN)/python bench/model.py
	$(BIN)/python bench/job.py
	$(BIN)/python bench/app.py
	$(BIN)/python bench/flow.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(APP_STAMP): requirements-app.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-app.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . || \
		$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(TEST_STAMP): requirements-test.txt $(APP_STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	touch $@

/usr/bin/chromium:
	@if [ "$$(id -u)" != 0 ]; then echo "Debian chromium is missing: run 'sudo apt-get install -y chromium' once, then make test again." >&2; exit 1; fi
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
