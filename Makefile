# Every target sets up what it needs on a fresh Debian machine (as root: apt packages too).
PY     ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Two test processes, each on its own scratch database, a test file never split between them
# (its module fixtures are made once): the suite's wall time on 2 cores is about two thirds.
PYTEST_WORKERS ?= 2

.PHONY: setup demo test bench lint db-start db-stop clean browser screenshots

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PY) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq python3-venv && $(PY) -m venv $(VENV); \
	  else echo "python3 -m venv failed: run as root: apt-get install python3-venv"; exit 1; fi; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

## demo: start the database, import the demo city, serve API and map on :8000
demo: setup
	$(BIN)/geo-service demo

## browser: Debian's chromium and a CJK font, for the web map's browser test (installed as root)
browser:
	@command -v chromium >/dev/null 2>&1 && fc-list :lang=zh 2>/dev/null | grep -q . || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; \
	  else echo "the map's browser test needs: apt-get install chromium fonts-wqy-microhei"; fi; }

## test: the whole suite against a real PostGIS (embedded cluster, or GEO_DATABASE_URL)
test: setup browser
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## screenshots: refresh the README's pictures of each map view and page (tests write theirs
## to build/screenshots, so that a test run leaves the checkout as it was)
screenshots: setup browser
	GEO_SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest -q tests/test_map_browser.py \
	  tests/test_map_grid_edit_browser.py tests/test_map_workload_browser.py \
	  tests/test_map_campaign_browser.py \
	  tests/test_phone_browser.py tests/test_map_proposal_browser.py

## bench: benchmarks against their peers; figures go to docs/PERFORMANCE.md
bench: setup
	$(BIN)/python -m tests.benchmarks

## bench-scale: cost against size at 1×, 3× and 10× the city (synth, imports, coverage, what-if,
## suggest, assign, geocode, tiles); figures to docs/PERFORMANCE.md, plot to docs/scale.png.
## Not part of `make bench`: it takes about an hour on 2 cores (the province alone most of it).
.PHONY: bench-scale
bench-scale: setup
	$(BIN)/python -m tests.benchmarks.bench_scale

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy geo_service web_map

db-start: setup
	$(BIN)/geo-service db start

db-stop: setup
	$(BIN)/geo-service db stop

clean:
	-$(BIN)/geo-service db stop
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
