# The two commands a newcomer needs: `make serve` and `make test`.
# Both create the virtual environment and install the project into it first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test install bench
serve: $(VENV)/.installed
	$(BIN)/journeys serve

test: $(VENV)/.installed
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-node-sdks.sh
	$(BIN)/pytest

bench: $(VENV)/.installed
	bash scripts/ensure-postgres.sh
	$(BIN)/python bench/batch_throughput.py
	$(BIN)/python bench/kafka_throughput.py
	$(BIN)/python bench/segment_query.py
	$(BIN)/python bench/large_customer.py
	$(BIN)/python bench/rebuild_verify.py
	$(BIN)/python bench/deal_history.py
	$(BIN)/python bench/analytics.py

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@
