# The two commands the README starts with:
#   make demo   set up .venv, pull the default models, run the daily pipeline on the sample data
#   make test   set up .venv the same way and run the test suite
# Needs only Python 3.11 and Java 17 on the machine.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
LAKE   ?= lake
DATE   ?= $(shell date +%F)
SAMPLES := data/samples
GENERATE := relsum personas persona_summaries preferences user_profiles item_profiles ratings rpo
EXAMPLES := \
  "select product_id, summary from gold.product_summaries" \
  "select user_id, persona from gold.personas" \
  "select user_id, product_id, suitability, summary from gold.persona_summaries" \
  "select user_id, profile from gold.user_profiles" \
  "select product_id, profile from gold.item_profiles" \
  "select user_id, product_id, predicted_rating, actual_rating, reasoning from gold.rating_predictions" \
  "select user_id, product_id, personalized_text from gold.personalized_texts" \
  "select task, reason, count(*) as n from silver.generation_failures group by 1, 2"

.PHONY: demo test venv models clean-lake bench help

help:
	@echo "make demo   - set up .venv, pull models, run the daily pipeline on data/samples into ./$(LAKE)"
	@echo "make test   - set up .venv and run the tests"
	@echo "make bench  - run the benchmarks in benchmarks/"

venv: $(BIN)/.installed

# torch==2.13.0 is the CPU wheel served locally; the pin keeps pip from pulling CUDA.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]' 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(BIN)/python -c "import jobs, pyspark, deltalake, torch" 
	touch $@

models: venv
	$(BIN)/precis models pull

demo: models
	$(BIN)/precis --lake $(LAKE) ingest reviews $(SAMPLES)/reviews/amazon2018_all_beauty_5core.jsonl.gz --category "All Beauty" --date $(DATE)
	$(BIN)/precis --lake $(LAKE) ingest relevance $(SAMPLES)/relevance/crowdflower_search_relevance_dev.csv.gz --format crowdflower --date $(DATE)
	$(BIN)/precis --lake $(LAKE) ingest relevance $(SAMPLES)/relevance/esci_us_exact_sample.csv.gz $(SAMPLES)/relevance/esci_us_graded_fixture_examples.parquet $(SAMPLES)/relevance/esci_us_graded_fixture_products.jsonl --format esci --date $(DATE)
	$(BIN)/precis --lake $(LAKE) job filter_reviews --date $(DATE)
	for job in $(GENERATE); do $(BIN)/precis --lake $(LAKE) job generate_$$job --date $(DATE); done
	$(BIN)/precis --lake $(LAKE) tables
	@for q in $(EXAMPLES); do $(BIN)/precis --lake $(LAKE) sql --max-rows 2 "$$q"; echo; done

test: models
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/ranker.py
	$(BIN)/python benchmarks/generate.py

clean-lake:
	rm -rf $(LAKE)
