# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates .venv when it is missing and installs the project into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output
DATASETS ?= $(abspath ../shared/datasets)

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m shopsense.demo --out $(DEMO_DIR) $(if $(filter cli,$(DEMO)),--no-serve)

test: $(STAMP)
	SHOPSENSE_DATASETS=$${SHOPSENSE_DATASETS:-$(DATASETS)} $(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	SHOPSENSE_DATASETS=$${SHOPSENSE_DATASETS:-$(DATASETS)} $(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

clean:
	rm -rf $(VENV) $(DEMO_DIR) bench-output
