# The README's commands. Every target sets itself up from nothing on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)
DEMO_DATA := datasets/synthetic/data/demo
DEMO_SIZE ?= 768

.PHONY: install demo test lint docs bench clean vendor browser stacapi

install: $(STAMP)

# torch and torchvision first, as their own step: this pair is the one that lies on
# this machine's disk (a CUDA build that also runs on CPU); pip takes it from there.
# requirements.lock pins every other package (pip freeze of a working environment), so
# the resolver has nothing to search.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

demo: install
	$(BIN)/cacaomap imagery synth --out $(DEMO_DATA) --size $(DEMO_SIZE)
	$(BIN)/cacaomap imagery composite --stac $(DEMO_DATA)/stac/catalog.json --period 2020-01-01/2020-12-31 \
	    --date 20201215 --out $(DEMO_DATA)/composites/s2l2a_20201215.tif
	$(BIN)/cacaomap imagery composite --stac $(DEMO_DATA)/stac/catalog.json --period 2024-01-01/2024-12-31 \
	    --date 20240820 --out $(DEMO_DATA)/composites/s2l2a_20240820.tif
	$(BIN)/cacaomap imagery stack-radar --optical $(DEMO_DATA)/composites/s2l2a_20201215.tif \
	    --radar $(DEMO_DATA)/radar/*.tif --period 2020-01-01/2020-12-31 \
	    --out $(DEMO_DATA)/composites_s1s2/s1s2_20201215.tif
	$(BIN)/cacaomap imagery stack-radar --optical $(DEMO_DATA)/composites/s2l2a_20240820.tif \
	    --radar $(DEMO_DATA)/radar/*.tif --period 2024-01-01/2024-12-31 \
	    --out $(DEMO_DATA)/composites_s1s2/s1s2_20240820.tif
	$(BIN)/cacaomap train fit --config experiments/demo.yaml
	$(BIN)/cacaomap train fit --config experiments/demo_radar.yaml
	$(BIN)/cacaomap dev demo
	$(BIN)/cacaomap dev mlflow-ui

# Performance figures (not run by CI): needs the demo's model; makes it if absent.
bench: install
	test -d models/cacaomap || $(MAKE) demo
	$(BIN)/cacaomap dev bench

lint: install
	$(BIN)/ruff check cacaomap training serving tests docs/hooks
	$(BIN)/mypy

# The reference site (docs/, MkDocs Material). --strict: a broken link or anchor, a page
# left out of the nav, or a CLI reference that cannot be generated fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: install lint docs browser stacapi
	$(BIN)/pytest

# Front-end libraries of the map page come from the npm registry and are committed under
# serving/http/static/vendor/ (the page loads nothing from a CDN). Rerun to update them.
LEAFLET := 1.9.4
vendor:
	rm -rf .vendor-tmp && mkdir .vendor-tmp
	cd .vendor-tmp && npm pack --silent leaflet@$(LEAFLET) && tar xzf leaflet-$(LEAFLET).tgz
	mkdir -p serving/http/static/vendor/leaflet
	cp -r .vendor-tmp/package/dist/leaflet.js .vendor-tmp/package/dist/leaflet.css \
	    .vendor-tmp/package/dist/images .vendor-tmp/package/LICENSE serving/http/static/vendor/leaflet/
	rm -rf .vendor-tmp

# The map page's browser test drives Debian's chromium (Playwright never downloads one).
browser:
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

# The STAC API the tests search: PostgreSQL + PostGIS from Debian's packages, and
# stac-fastapi-pgstac + pypgstac in a virtual environment of their own (a server the
# product talks to, not one of its dependencies). Where they cannot be installed the
# tests that need them are skipped, saying why.
STAC_VENV := .venv-stac
STAC_STAMP := $(STAC_VENV)/.installed-$(shell sha1sum tests/stac_api_requirements.txt | cut -c1-12)
stacapi: $(STAC_STAMP)
	@ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || \
	    (apt-get update -q && apt-get install -y -q postgresql postgis) || \
	    echo "warning: PostgreSQL/PostGIS not installed: the STAC API tests will be skipped"

$(STAC_STAMP): tests/stac_api_requirements.txt
	rm -rf $(STAC_VENV)
	$(PYTHON) -m venv $(STAC_VENV)
	$(STAC_VENV)/bin/pip install --quiet -r tests/stac_api_requirements.txt
	touch $@

clean:
	rm -rf $(DEMO_DATA) experiments/runs experiments/mlartifacts experiments/mlflow.db
