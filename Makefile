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
	$(BIN)/python -m pip install --quiet -e ".[dev,sweep,mlflow,streaming]"
	touch $@

install: $(BIN)/genlab

train: install
	$(BIN)/genlab train $(ARGS)

test: install
	$(BIN)/python -m pytest -q

# Every benchmark's --json into bench/ (not committed: see README "Benchmark"), then the
# README's tables rewritten from it. BENCH_ARGS go to the throughput scripts.
BENCH_ARGS ?=
bench: install
	mkdir -p bench
	$(BIN)/python scripts/bench_train.py --model conv_ae --json bench/train_conv_ae.json $(BENCH_ARGS)
	$(BIN)/python scripts/bench_train.py --model ae --json bench/train_ae.json $(BENCH_ARGS)
	$(BIN)/python scripts/bench_train.py --model deep_ae --json bench/train_deep_ae.json $(BENCH_ARGS)
	$(BIN)/python scripts/bench_train.py --model vae --json bench/train_vae.json $(BENCH_ARGS)
	$(BIN)/python scripts/bench_gan.py --model gan --json bench/gan_gan.json $(BENCH_ARGS)
	$(BIN)/python scripts/bench_gan.py --json bench/gan.json $(BENCH_ARGS)
	$(BIN)/python scripts/bench_gan.py --model progan --json bench/gan_progan.json $(BENCH_ARGS)
	$(BIN)/python scripts/bench_gan.py --model biggan --json bench/gan_biggan.json $(BENCH_ARGS)
	$(BIN)/python scripts/bench_translation.py --json bench/translation.json $(BENCH_ARGS)
	$(BIN)/python scripts/bench_memory.py --json bench/memory.json
	$(BIN)/python scripts/bench_startup.py --json bench/startup.json
	$(BIN)/python scripts/bench_eval.py --json bench/eval.json
	$(BIN)/python scripts/bench_table.py bench/train_conv_ae.json bench/train_ae.json \
		bench/train_deep_ae.json bench/train_vae.json bench/gan_gan.json bench/gan.json \
		bench/gan_progan.json bench/gan_biggan.json bench/translation.json \
		bench/memory.json bench/startup.json bench/eval.json

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check genlab tests scripts
