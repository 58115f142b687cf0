# lockd — two commands matter: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= deploy/examples/lockd-dev.yaml

.PHONY: run test venv system-deps proto check-proto lint typecheck contracts pytest clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/lockd start --config $(CONFIG)

test: $(STAMP) system-deps check-proto lint typecheck contracts pytest

# Debian packages some tests use (a real Prometheus, PostgreSQL's initdb/pg_ctl); installed
# only when running as root with apt-get, otherwise those tests skip and say why.
system-deps:
	@if command -v promtool >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's prometheus for the metrics tests"; \
	  (apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && \
	    apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1)) || \
	  echo "could not install prometheus; the Prometheus tests will skip"; \
	else echo "prometheus not installed (needs root and apt-get); the Prometheus tests will skip"; fi
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's postgresql for the PostgreSQL store tests"; \
	  (apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && \
	    apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1)) || \
	  echo "could not install postgresql; the PostgreSQL tests will skip"; \
	else echo "postgresql not installed (needs root and apt-get); the PostgreSQL tests will skip"; fi

proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

check-proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py --check

lint: $(STAMP)
	$(BIN)/ruff check lockd tests scripts
	$(BIN)/ruff format --check lockd tests scripts

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
