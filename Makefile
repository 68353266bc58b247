# Every target that runs code first runs `install`, which creates or refreshes .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install run up-prometheus test lint typecheck format bench-serve bench-train bench bench-full clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[service,trainer,embedded,dev]"
	@touch $(STAMP)

run: install
	$(BIN)/veto up $(ARGS)

# `make run` plus a Prometheus server on 127.0.0.1:9090 (needs the `prometheus` binary).
up-prometheus: install
	$(BIN)/veto up --with-prometheus $(ARGS)

test: install lint typecheck
	$(BIN)/python -m pytest -q $(ARGS)

lint: install
	$(BIN)/ruff format --check veto service trainer tests bench
	$(BIN)/ruff check veto service trainer tests bench

typecheck: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff format veto service trainer tests bench
	$(BIN)/ruff check --fix veto service trainer tests bench

# The suite's parts (bench/run.py): GET recommendations vs bare FastAPI at 100k items;
# training examples/s and feedback-to-model freshness at 100k and 1M items.
bench-serve: install
	$(BIN)/python -m bench.run --only serving $(ARGS)

bench-train: install
	$(BIN)/python -m bench.run --full --only training,freshness $(ARGS)

# The benchmark suite (bench/run.py): quick, 100k items, a few minutes; results in bench/results/.
bench: install
	$(BIN)/python -m bench.run $(ARGS)

# 100k and 1M items, longer runs. The soak: make bench ARGS="--only soak --soak-seconds 600".
bench-full: install
	$(BIN)/python -m bench.run --full $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
