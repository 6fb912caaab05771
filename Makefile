# The two commands the README promises, each bootstrapping what it needs from this
# repository alone: a virtualenv from pyproject.toml, and Kafka's jars from Maven
# Central (fetched on first use by stream/dev/kafka_local.py into .cache/).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench evaluate kafka-fetch system-deps clean

# Real servers the tests start on loopback, from Debian's packages: Prometheus and
# promtool, Alertmanager, PostgreSQL, Chromium with its driver for browser tests, and a
# CJK font so zh-CN pages render in the screenshots.
DEBS := prometheus prometheus-alertmanager postgresql chromium chromium-driver fonts-wqy-microhei
DEB_BINS := /usr/bin/prometheus /usr/bin/promtool /usr/bin/prometheus-alertmanager \
	/usr/bin/chromium /usr/bin/chromedriver /usr/share/fonts/truetype/wqy/wqy-microhei.ttc

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,rocksdb,dashboards]'
	touch $(STAMP)

system-deps:
	@missing=""; for b in $(DEB_BINS); do [ -e $$b ] || missing="$$missing $$b"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the tests ($$missing missing)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DEBS) >/dev/null; \
	fi

kafka-fetch: $(STAMP)
	$(BIN)/python -m stream.dev.kafka_local fetch

## Run the local demo: broker, worker, simulated fleet, live alerts and metrics, then
## the score of its alerts against the simulated ground truth.
demo: $(STAMP) kafka-fetch
	$(BIN)/meterwatch demo

## Run the tests (unit tests and the real-Kafka pipeline tests).
test: $(STAMP) kafka-fetch system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: $(STAMP) kafka-fetch
	$(BIN)/python bench/pipeline.py

evaluate: $(STAMP)
	$(BIN)/meterwatch evaluate --out out/evaluation

clean:
	rm -rf $(VENV) .cache .data out
