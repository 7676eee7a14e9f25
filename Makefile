# Two commands: `make demo` and `make test`. Both install into .venv first (once per pyproject.toml).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.install-stamp-$(shell sha256sum pyproject.toml Makefile | sha256sum | cut -c1-16)
TORCH  ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1

.PHONY: install demo test test-gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# torch first, so nothing below resolves torch to a multi-GB CUDA build.
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,plot]"
	@rm -f $(VENV)/.install-stamp-*
	@touch $@

demo: install
	$(OFFLINE) $(BIN)/llmcourse demo

test: install
	$(OFFLINE) $(BIN)/python -m pytest -q --durations=20

# GPU-marked tests, on a CUDA machine (pytest's exit code 5, "no tests collected", is not a failure).
test-gpu: install
	$(OFFLINE) $(BIN)/python -m pytest -q -m gpu || [ $$? -eq 5 ]

clean:
	rm -rf $(VENV) .pytest_cache
