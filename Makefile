# The two commands a newcomer needs: `make serve` and `make test`.
# Both create the virtual environment first; serving installs only what the service needs,
# testing adds the test tools (browsers' drivers, SDKs, schemathesis...).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test install bench
serve: $(VENV)/.installed-serve
	$(BIN)/journeys serve

test: $(VENV)/.installed-test
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-node-sdks.sh
	$(BIN)/ruff check
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(VENV)/.installed-test
	bash scripts/ensure-postgres.sh
	$(BIN)/python bench/batch_throughput.py
	$(BIN)/python bench/kafka_throughput.py
	$(BIN)/python bench/segment_query.py
	$(BIN)/python bench/fold.py
	$(BIN)/python bench/large_customer.py
	$(BIN)/python bench/rebuild_verify.py
	$(BIN)/python bench/deal_history.py
	$(BIN)/python bench/analytics.py

install: $(VENV)/.installed-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-serve: pyproject.toml | $(BIN)/python
	@echo "installing the service's packages into $(VENV) (first run only, about a minute)..."
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	@echo "installing the service and its test tools into $(VENV) (first run only, a few minutes)..."
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-serve
