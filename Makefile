# shopai_spark — run `make help` for the targets. Needs only Python >= 3.10 and Java 17.
PYTHON ?= python3
SPARK_LINE ?= 4.2
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-done
PINS   := constraints/spark-$(SPARK_LINE).txt
CONF   ?= conf/local.yaml
BENCH_SIZE ?= small

.DEFAULT_GOAL := help
.PHONY: help setup demo test kill-test test-heavy test-fast lint bench package cluster-test connect-test smoke-spark40 clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv, install -e .[dev] pinned by constraints/spark-$(SPARK_LINE).txt, cache the Delta jars

$(STAMP): pyproject.toml $(PINS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -c $(PINS) -e '.[dev]'
	$(BIN)/python -m shopai_spark.session
	touch $(STAMP)

demo: setup  ## generate sample data and run the whole pipeline locally
	$(BIN)/python jobs/pipeline.py --conf $(CONF)

test: setup  ## the test suite CI runs (real Spark, Delta and MLflow), all but the heavy tests
	$(BIN)/python -m pytest -m "not heavy" --durations=15

kill-test: setup  ## the whole kill matrix: each job SIGKILLed and SIGTERMed after each of its commits (~35 min)
	$(BIN)/python -m pytest -m kill --durations=6

test-heavy: setup  ## the heavy tests: whole pipelines, notebooks, full real-data runs (minutes each)
	$(BIN)/python -m pytest -m heavy --durations=15

test-fast: setup  ## the unit tests only (no end-to-end job runs, no real-data tests)
	$(BIN)/python -m pytest -m "not e2e and not realdata and not heavy and not kill"

lint: setup  ## ruff
	$(BIN)/ruff check shopai_spark jobs tests bench

bench: setup  ## benchmarks (BENCH_SIZE=small|large), results in bench/results/
	$(BIN)/python -m bench.harness --size $(BENCH_SIZE)
	$(BIN)/python -m bench.harness --size $(BENCH_SIZE) --only als --connect

package: setup  ## dist/: the wheel and shopai_spark.zip for spark-submit --py-files
	rm -rf dist && mkdir -p dist
	$(BIN)/pip wheel --no-deps -q -w dist .
	$(BIN)/python -c "import shutil; shutil.make_archive('dist/shopai_spark', 'zip', base_dir='shopai_spark')"
	@ls -1 dist

cluster-test: setup  ## every job via spark-submit on a local standalone cluster (1 master, 2 workers)
	$(BIN)/python scripts/cluster_test.py

connect-test: setup  ## the whole pipeline through a real Spark Connect server on 127.0.0.1
	$(BIN)/python scripts/connect_test.py

smoke-spark40:  ## the whole pipeline (small shop, local) on the Spark 4.0 line, in .venv-spark40
	$(MAKE) setup VENV=.venv-spark40 SPARK_LINE=4.0
	.venv-spark40/bin/python scripts/connect_test.py --local

clean:  ## remove the venv, local lakehouse, MLflow store and caches
	rm -rf .venv .venv-spark40 lakehouse mlruns mlflow.db data/raw checkpoints logs spark-warehouse .pytest_cache .ruff_cache \
	       bench/results/tmp dist build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
