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

test: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not gpu"

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -m gpu

bench: $(STAMP)
	$(BIN)/python benchmarks/inference_speed.py

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

clean:
	rm -rf $(VENV) runs .pytest_cache
