# The two commands the README promises, each bootstrapping what it needs from this
# repository alone: a virtualenv from pyproject.toml, and Kafka's jars from Maven
# Central (fetched on first use by stream/kafka_local.py into .cache/).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench evaluate kafka-fetch clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,rocksdb]'
	touch $(STAMP)

kafka-fetch: $(STAMP)
	$(BIN)/python -m stream.kafka_local fetch

## Run the local demo: broker, worker, simulated fleet, live alerts and metrics.
demo: $(STAMP) kafka-fetch
	$(BIN)/meterwatch demo

## Run the tests (unit tests and the real-Kafka pipeline tests).
test: $(STAMP) kafka-fetch
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: $(STAMP) kafka-fetch
	$(BIN)/python bench/pipeline.py

evaluate: $(STAMP)
	$(BIN)/meterwatch evaluate --out out/evaluation

clean:
	rm -rf $(VENV) .cache .data out
