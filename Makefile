# The two commands a user needs: `make demo` and `make test`.
# Both create .venv and install the pinned requirements first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test system-deps bench clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
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
	$(PY) -m gevent.monkey --module pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
