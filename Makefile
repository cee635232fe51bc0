# Two commands do all the set-up on a fresh machine:
#   make train   # creates .venv, installs genlab, trains on the embedded default data
#   make test    # creates .venv, installs genlab, runs the test suite
# Extra overrides for genlab: make train ARGS="model=sparse_ae trainer.max_epochs=2"

VENV ?= .venv
PYTHON ?= python3
# The CPU build of torch; an unpinned torch would pull several GB of CUDA packages.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install train test bench lint

$(BIN)/genlab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,sweep,mlflow]"
	touch $@

install: $(BIN)/genlab

train: install
	$(BIN)/genlab train $(ARGS)

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python scripts/bench_train.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check genlab tests scripts
