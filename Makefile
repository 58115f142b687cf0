# lockd — two commands matter: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The linters of deploy/ (checkov, hadolint, kubernetes-validate) in a virtualenv of their own.
OPS    := .venv-ops
CONFIG ?= deploy/examples/lockd-dev.yaml

.PHONY: run run-ha test venv system-deps ops-tools proto check-proto lint typecheck contracts pytest clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/lockd start --config $(CONFIG)

# A local HA cluster in ./data/ha: PostgreSQL, two auth replicas, two agents (docs/ha.md).
run-ha: $(STAMP) system-deps
	$(BIN)/python scripts/run_ha.py

test: $(STAMP) system-deps ops-tools check-proto lint typecheck contracts pytest

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
	@for pair in systemd-analyze:systemd logrotate:logrotate; do \
	  tool=$${pair%%:*}; package=$${pair#*:}; \
	  if PATH="$$PATH:/usr/sbin:/sbin" command -v $$tool >/dev/null 2>&1; then :; \
	  elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's $$package for the deploy/ tests"; \
	    (apt-get install -y -qq --no-install-recommends $$package >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && \
	      apt-get install -y -qq --no-install-recommends $$package >/dev/null 2>&1)) || \
	    echo "could not install $$package; the deploy/ tests that need $$tool will skip"; \
	  else echo "$$tool not installed (needs root and apt-get); the deploy/ tests that need it will skip"; fi; \
	done
	@for pair in sshd:openssh-server ssh:openssh-client; do \
	  tool=$${pair%%:*}; package=$${pair#*:}; \
	  if PATH="$$PATH:/usr/sbin:/sbin" command -v $$tool >/dev/null 2>&1; then :; \
	  elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's $$package for the SSH tests (tests/ssh)"; \
	    (apt-get install -y -qq --no-install-recommends $$package >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && \
	      apt-get install -y -qq --no-install-recommends $$package >/dev/null 2>&1)) || \
	    echo "could not install $$package; the SSH tests will skip"; \
	  else echo "$$tool not installed (needs root and apt-get); the SSH tests will skip"; fi; \
	done
	@if command -v etcd >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's etcd-server for lockd bench propagation --peer etcd"; \
	  (apt-get install -y -qq --no-install-recommends etcd-server >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && \
	    apt-get install -y -qq --no-install-recommends etcd-server >/dev/null 2>&1)) || \
	  echo "could not install etcd-server; the etcd peer test will skip"; \
	else echo "etcd not installed (needs root and apt-get); the etcd peer test will skip"; fi

# checkov, hadolint and kubernetes-validate for tests/deploy; without them those tests skip.
ops-tools: $(OPS)/.installed

$(OPS)/.installed: tests/deploy/tool-requirements.txt
	@test -x $(OPS)/bin/python || $(PYTHON) -m venv $(OPS)
	@if $(OPS)/bin/python -m pip install --quiet -r tests/deploy/tool-requirements.txt; then touch $@; \
	else echo "could not install the deploy/ linters; the tests that need them will skip"; fi

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
	rm -rf $(VENV) $(OPS) .mypy_cache .ruff_cache .pytest_cache
