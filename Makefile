# The two commands a newcomer needs: `make demo` and `make test`. Both create or update .venv first.
# `make lab` opens the tutorial's notebooks in JupyterLab.
# `make test-fast` is the everyday loop (no end-to-end runs); `make test` is what CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast test-gpu bench lab clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev]"
	$(BIN)/python -c "import fastai.vision.all, colorize"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/colorize demo

# One pytest worker per core, each test file on one worker (its module fixtures built once), one torch
# thread per worker: two workers of two threads each on a 2-core machine are slower than one.
PARALLEL := -n auto --dist loadfile

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "not gpu" $(PARALLEL)

test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "not slow and not gpu" $(PARALLEL)

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -m gpu

bench: $(STAMP)
	$(BIN)/python benchmarks/inference_speed.py
	$(BIN)/python benchmarks/archive_speed.py
	$(BIN)/python benchmarks/video_speed.py

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

clean:
	rm -rf $(VENV) runs .pytest_cache
