# lockd — two commands matter: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= deploy/examples/lockd-dev.yaml

.PHONY: run test venv proto check-proto lint typecheck contracts pytest clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/lockd start --config $(CONFIG)

test: $(STAMP) check-proto lint typecheck contracts pytest

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
