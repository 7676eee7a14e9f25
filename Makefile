# Two commands: `make demo` and `make test`. Both install into .venv first (once per pyproject.toml).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.install-stamp-$(shell sha256sum pyproject.toml Makefile | sha256sum | cut -c1-16)
TORCH  ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1

# llama-cpp-python is published as source only: it is compiled once per machine into a cache outside
# the checkout, portably (a -march=native build uses instructions, AMX, that some CPUs advertise but
# cannot run), and with only what the Python bindings load: no multimodal library, no llama.cpp
# "common" library (see scripts/llama-cpp-bindings-only.cmake). About 3 minutes on 2 cores.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CPP_SDIST   := llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz
LLAMA_CPP_HOOK    := $(CURDIR)/scripts/llama-cpp-bindings-only.cmake
LLAMA_CPP_FLAGS   := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DCMAKE_PROJECT_INCLUDE=$(LLAMA_CPP_HOOK)
LLAMA_CPP_TAG     := $(shell cat $(LLAMA_CPP_HOOK) | sha256sum | cut -c1-8)
LLAMA_CPP_CACHE   ?= $(HOME)/.cache/llmcourse/build/llama-cpp-python-$(LLAMA_CPP_VERSION)-portable-$(LLAMA_CPP_TAG)
GGUF_STAMP        := $(VENV)/.gguf-engine-$(LLAMA_CPP_VERSION)
NOT_GPU           := not gpu
HQQ_SIDE          := $(VENV)/side/hqq
GPTQ_SIDE         := $(VENV)/side/gptq
# GPTQModel 7.6.0 is the newest release that runs with torch < 2.14; these are its run-time
# dependencies that the environment lacks (numpy, transformers, accelerate... are shared).
GPTQ_PACKAGES     := gptqmodel==7.6.0 optimum==2.3.0 torchao==0.18.0 device-smi==0.5.7 pypcre==0.6.4 tokenicer==0.0.14 \
                     logbar==0.4.15 defuser==0.0.28
SIDE_PATHS        := LLMCOURSE_TEST_HQQ=$(CURDIR)/$(HQQ_SIDE) LLMCOURSE_TEST_GPTQ=$(CURDIR)/$(GPTQ_SIDE) \
                     LLMCOURSE_LLAMA_CPP_SDIST=$(LLAMA_CPP_CACHE)/$(LLAMA_CPP_SDIST)

.PHONY: install gguf-engine llama-cpp-sdist demo test test-fast test-gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# torch first, so nothing below resolves torch to a multi-GB CUDA build.
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,plot]"
	@# hqq goes beside the environment, not into it: once installed, transformers imports it with
	@# every model (and hqq compiles at import, ~4 s), so only the hqq tests put it on their path.
	@# DISABLE_CUDA=1: hqq would otherwise try to compile CUDA kernels while it installs.
	DISABLE_CUDA=1 $(BIN)/pip install --quiet --no-deps --target $(HQQ_SIDE) "hqq==0.2.8.post1" "einops>=0.8" "termcolor>=2"
	@# GPTQModel too (it brings torchao, which transformers then imports with every model), and
	@# without its pins (numpy==2.2.6) that would change the shared environment.
	$(BIN)/pip install --quiet --no-deps --target $(GPTQ_SIDE) $(GPTQ_PACKAGES)
	@rm -f $(VENV)/.install-stamp-*
	@touch $@

# The converter comes from the same source archive as the runtime, and is put in place before the
# package, so that `import llama_cpp` succeeding means the whole GGUF engine is ready.
gguf-engine: $(GGUF_STAMP)

$(GGUF_STAMP): $(STAMP) $(LLAMA_CPP_CACHE)/$(LLAMA_CPP_SDIST)
	@ls $(LLAMA_CPP_CACHE)/llama_cpp_python-*.whl >/dev/null 2>&1 || CMAKE_ARGS="$(LLAMA_CPP_FLAGS)" nice -n 19 \
		$(BIN)/pip wheel --quiet --no-deps --no-cache-dir $(LLAMA_CPP_CACHE)/$(LLAMA_CPP_SDIST) -w $(LLAMA_CPP_CACHE)
	$(BIN)/python -m llmcourse.quantize.llamacpp.source $(LLAMA_CPP_CACHE)/$(LLAMA_CPP_SDIST) --version $(LLAMA_CPP_VERSION)
	$(BIN)/pip install --quiet "gguf>=0.19" $(LLAMA_CPP_CACHE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	@touch $@

# The source archive also carries llama.cpp's vocabulary files: the tests build real tokenizers
# (Llama, Mistral, Qwen, Phi...) from them for tiny models of those families.
llama-cpp-sdist: $(LLAMA_CPP_CACHE)/$(LLAMA_CPP_SDIST)

$(LLAMA_CPP_CACHE)/$(LLAMA_CPP_SDIST): | $(STAMP)
	@mkdir -p $(LLAMA_CPP_CACHE)
	$(BIN)/pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$(LLAMA_CPP_VERSION)" -d $(LLAMA_CPP_CACHE)

# The demo's GPTQ row uses the GPTQModel installed beside the environment.
demo: install gguf-engine
	PYTHONPATH=$(CURDIR)/$(GPTQ_SIDE) $(OFFLINE) $(BIN)/llmcourse demo

# The GGUF engine compiles (niced) while the tests that do not need it run; the `gguf` tests run
# after it, in a second pytest session that shares the first one's lab models.
test: install llama-cpp-sdist
	@echo "building the GGUF engine in the background (log: $(VENV)/gguf-engine.log)"
	@$(MAKE) --no-print-directory gguf-engine > $(VENV)/gguf-engine.log 2>&1 & engine=$$!; \
	home=$$(mktemp -d); \
	LLMCOURSE_TEST_HOME=$$home LLMCOURSE_TEST_DEMO_SKIP=gguf $(SIDE_PATHS) $(OFFLINE) $(BIN)/python -m pytest -q -m "$(NOT_GPU) and not gguf" --durations=15; first=$$?; \
	wait $$engine || { tail -40 $(VENV)/gguf-engine.log; rm -rf $$home; exit 1; }; \
	LLMCOURSE_TEST_HOME=$$home $(SIDE_PATHS) $(OFFLINE) $(BIN)/python -m pytest -q -m "$(NOT_GPU) and gguf" --durations=10; second=$$?; \
	rm -rf $$home; test $$first -eq 0 -a $$second -eq 0

# The inner loop: no training, no GGUF engine, no trained lab model (a few minutes).
test-fast: install llama-cpp-sdist
	LLMCOURSE_TEST_FAST=1 $(SIDE_PATHS) $(OFFLINE) $(BIN)/python -m pytest -q -m "$(NOT_GPU) and not slow and not gguf" --durations=5

# GPU-marked tests, on a CUDA machine (pytest's exit code 5, "no tests collected", is not a failure).
test-gpu: install gguf-engine
	$(SIDE_PATHS) $(OFFLINE) $(BIN)/python -m pytest -q -m gpu || [ $$? -eq 5 ]

clean:
	rm -rf $(VENV) .pytest_cache
