# Watchkeeper. The two commands that matter: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install demo stop lint test test-fast browser bench clean

# The serving client (client/, its own package) is installed beside the app so its tests and the demo fleet import it.
$(VENV)/.installed: pyproject.toml client/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]" -e "./client[fast]"
	touch $@

install: $(VENV)/.installed

demo: install
	@bash docker/demo.sh

stop:
	@bash docker/stop.sh

# Debian's chromium for the browser tests; Playwright never downloads a browser here.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# The layers (import-linter), ruff and mypy with django-stubs; the settings are configured in pyproject.toml.
# mypy's Django plugin imports the settings, which need a SECRET_KEY and nothing else.
lint: install
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check dashboard monitoring workers tests bench client docker/demo_fleet.py
	SECRET_KEY=lint-only $(VENV)/bin/mypy
	cd client && ../$(VENV)/bin/mypy watchkeeper_client

# Three test processes on two cores: much of the suite waits on a worker, a browser or a receiver, not the CPU.
# Each process has its own test database and Redis database (tests/xdist_isolation.py); a file stays in one process
# so its module fixtures (a spawned worker, a live server) start once.
TEST_PROCESSES ?= 3
PYTEST_ARGS ?= -n $(TEST_PROCESSES) --dist loadfile

test: install browser
	@eval "$$(python3 docker/services.py --require)" && \
	  SECRET_KEY=test-only-not-secret $(PY) -m pytest $(PYTEST_ARGS)

# Everything except the real-worker and browser tests, for a quick loop while editing.
test-fast: install
	@eval "$$(python3 docker/services.py --require)" && \
	  SECRET_KEY=test-only-not-secret $(PY) -m pytest -m "not worker and not browser" $(PYTEST_ARGS)

# The pages a bench renders name their static files through collectstatic's manifest.
bench: install
	@eval "$$(python3 docker/services.py --require)" && \
	  SECRET_KEY=bench-only $(PY) manage.py collectstatic --noinput -v0 && \
	  for script in bench/*.py; do SECRET_KEY=bench-only $(PY) $$script || exit 1; done

clean: stop
	rm -rf var/static var/log var/run
