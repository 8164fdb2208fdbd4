# The two commands a user needs: `make demo` and `make test`.
# Both create .venv and install the pinned requirements first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast validate lint format system-deps bench profile-deps clean

# pip would compile the bytecode one file at a time (half the install); compileall uses every core.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --no-compile -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	$(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null
	touch $(STAMP)

# Debian packages the tests use: headless Chromium renders the HTML report.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian package chromium (report rendering test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

demo: $(STAMP)
	$(VENV)/bin/wsstorm demo

# Locust is gevent-based: the whole suite runs under gevent's monkey patching,
# as Locust's docs advise, so that Locust-driven tests behave as in `locust`.
test: $(STAMP) system-deps
	$(PY) -m gevent.monkey --module pytest -q -m "not validation" $(PYTEST_ARGS)

# The fleet model against minutes of real runs of the metastable scenario (issue 14: within 15%).
validate: $(STAMP)
	$(PY) -m gevent.monkey --module pytest -q -m validation $(PYTEST_ARGS)

# Unit and property tests only (no servers, no Locust runs, no whole reports, no CLI children), with a
# quarter of the property examples (tests/conftest.py): under a minute. `make test` runs them all in full.
test-fast: $(STAMP)
	$(PY) -m gevent.monkey --module pytest -q -m "not e2e and not integration and not validation" --hypothesis-profile=fast $(PYTEST_ARGS)

# ruff (lint + format check), mypy (strict on the pure modules), import-linter (the boundaries).
# import-linter reads the installed layout, where analysis/ is wsstorm.analysis: a copy of it.
LINT_TREE := $(VENV)/lint-tree
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy wsstorm analysis locustfile.py
	rm -rf $(LINT_TREE) && mkdir -p $(LINT_TREE)
	cp -r wsstorm $(LINT_TREE)/wsstorm && cp -r analysis $(LINT_TREE)/wsstorm/analysis
	cd $(LINT_TREE) && ../bin/lint-imports --no-cache --config $(CURDIR)/pyproject.toml

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# py-spy for profiling the harness (issue 16); not needed to run or test.
profile-deps: $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
