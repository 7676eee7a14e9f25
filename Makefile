# Two commands: `make demo` and `make test`. Both install into .venv first (once per pyproject.toml).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HASH   := $(shell sha256sum pyproject.toml Makefile | sha256sum | cut -c1-16)
STAMP  := $(VENV)/.install-stamp-$(HASH)
TORCH  ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1

# llama-cpp-python is published as source only: it is compiled once per machine into a cache outside
# the checkout, portably (a -march=native build uses instructions, AMX, that some CPUs advertise but
# cannot run), and with only what the Python bindings load: no multimodal library, no llama.cpp
# "common" library (see scripts/llama-cpp-bindings-only.cmake). About 2 minutes on 2 idle cores.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CPP_SDIST   := llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz
LLAMA_CPP_HOOK    := $(CURDIR)/scripts/llama-cpp-bindings-only.cmake
LLAMA_CPP_FLAGS   := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DCMAKE_PROJECT_INCLUDE=$(LLAMA_CPP_HOOK)
LLAMA_CPP_TAG     := $(shell cat $(LLAMA_CPP_HOOK) | sha256sum | cut -c1-8)
LLAMA_CPP_CACHE   ?= $(HOME)/.cache/llmcourse/build/llama-cpp-python-$(LLAMA_CPP_VERSION)-portable-$(LLAMA_CPP_TAG)
LLAMA_CPP_WHEEL   := $(LLAMA_CPP_CACHE)/wheel-built
GGUF_STAMP        := $(VENV)/.gguf-engine-$(LLAMA_CPP_VERSION)
NOT_GPU           := not gpu
SDIST_PATH        := LLMCOURSE_LLAMA_CPP_SDIST=$(LLAMA_CPP_CACHE)/$(LLAMA_CPP_SDIST)
# Extras that change what every command imports get an environment each, installed exactly as a user
# installs them (pip install -e '.[EXTRA]'): with hqq installed, transformers imports it with every
# model (and hqq compiles at import, ~4 s); GPTQModel brings torchao, which transformers then imports,
# and pins numpy. Their tests (marked gptq / hqq) skip elsewhere and run there.
EXTRAS            := gptq hqq
EXTRA_STAMPS      := $(foreach extra,$(EXTRAS),$(VENV)-$(extra)/.install-stamp-$(HASH))

# pip compiles every installed file to bytecode one at a time, which took about as long as the rest
# of the install; compileall does the same on every core afterwards. (Leaving it to first import is
# no option: with PYTHONDONTWRITEBYTECODE set, every process would compile what it imports again.)
# compileall exits 1 when any file will not compile (torch ships a test module in Python 3.12
# syntax); pip skips such a file too, and so does this.
PIP_INSTALL       := pip install --quiet --no-compile
BYTE_COMPILE       = $(1)/python -m compileall -qq -j 0 $$($(1)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") || true

.PHONY: install extras gguf-engine llama-cpp-sdist llama-cpp-wheel demo test test-fast test-gpu clean

install: $(STAMP)

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(VENV)/pyvenv.cfg
	@# torch first, so nothing below resolves torch to a multi-GB CUDA build.
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/$(PIP_INSTALL) "$(TORCH)"
	$(BIN)/$(PIP_INSTALL) -e ".[test,plot]"
	@$(call BYTE_COMPILE,$(BIN))
	@rm -f $(VENV)/.install-stamp-*
	@touch $@

extras: $(EXTRA_STAMPS)

# DISABLE_CUDA=1: hqq would otherwise try to compile CUDA kernels while it installs.
$(VENV)-%/.install-stamp-$(HASH): pyproject.toml Makefile
	@test -x $(VENV)-$*/bin/python || $(PYTHON) -m venv $(VENV)-$*
	@$(VENV)-$*/bin/python -c "import torch" 2>/dev/null || $(VENV)-$*/bin/$(PIP_INSTALL) "$(TORCH)"
	DISABLE_CUDA=1 $(VENV)-$*/bin/$(PIP_INSTALL) -e ".[$*,test]"
	@$(call BYTE_COMPILE,$(VENV)-$*/bin)
	@rm -f $(VENV)-$*/.install-stamp-*
	@touch $@

# The converter comes from the same source archive as the runtime, and is put in place before the
# package, so that `import llama_cpp` succeeding means the whole GGUF engine is ready.
gguf-engine: $(GGUF_STAMP)

$(GGUF_STAMP): $(STAMP) $(LLAMA_CPP_WHEEL)
	$(BIN)/python -m llmcourse.quantize.llamacpp.source $(LLAMA_CPP_CACHE)/$(LLAMA_CPP_SDIST) --version $(LLAMA_CPP_VERSION)
	$(BIN)/pip install --quiet "gguf>=0.19" $(LLAMA_CPP_CACHE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	@touch $@

# The compile needs only pip, not the package: `make demo` starts it before the install.
llama-cpp-wheel: $(LLAMA_CPP_WHEEL)

$(LLAMA_CPP_WHEEL): $(LLAMA_CPP_CACHE)/$(LLAMA_CPP_SDIST)
	@ls $(LLAMA_CPP_CACHE)/llama_cpp_python-*.whl >/dev/null 2>&1 || CMAKE_ARGS="$(LLAMA_CPP_FLAGS)" nice -n 19 \
		$(BIN)/pip wheel --quiet --no-deps --no-cache-dir $(LLAMA_CPP_CACHE)/$(LLAMA_CPP_SDIST) -w $(LLAMA_CPP_CACHE)
	@touch $@

# The source archive also carries llama.cpp's vocabulary files: the tests build real tokenizers
# (Llama, Mistral, Qwen, Phi...) from them for tiny models of those families.
llama-cpp-sdist: $(LLAMA_CPP_CACHE)/$(LLAMA_CPP_SDIST)

$(LLAMA_CPP_CACHE)/$(LLAMA_CPP_SDIST): | $(VENV)/pyvenv.cfg
	@mkdir -p $(LLAMA_CPP_CACHE)
	$(BIN)/pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$(LLAMA_CPP_VERSION)" -d $(LLAMA_CPP_CACHE)

# The demo's GPTQ row needs the [gptq] extra (.venv-gptq/bin/llmcourse demo, after make extras).
# On a machine's first run llama.cpp downloads and compiles (niced) while the package installs and
# the demo trains; once the install is done (INSTALLED) it is installed into .venv too. The demo
# waits for it before its GGUF stage, reading the build's exit status from ENGINE_STATUS. The build
# runs in a session of its own (setsid, where there is one) so that Ctrl-C stops it with the demo.
ENGINE_STATUS := $(VENV)/.gguf-engine-build-status
INSTALLED     := $(VENV)/.demo-installed
demo: | $(VENV)/pyvenv.cfg
	@rm -f $(ENGINE_STATUS) $(ENGINE_STATUS).tmp $(INSTALLED)
	@test -f $(GGUF_STAMP) || echo "building the GGUF engine in the background while the demo installs and trains (log: $(VENV)/gguf-engine.log)"
	@$$(command -v setsid) sh -c '$(MAKE) --no-print-directory llama-cpp-wheel && until test -f $(INSTALLED); do sleep 1; done && \
		$(MAKE) --no-print-directory gguf-engine; echo $$? > $(ENGINE_STATUS).tmp; mv $(ENGINE_STATUS).tmp $(ENGINE_STATUS)' \
		> $(VENV)/gguf-engine.log 2>&1 & engine=$$!; \
	stop="kill -- -$$engine 2>/dev/null || kill $$engine"; trap "$$stop; rm -f $(INSTALLED); exit 130" INT TERM; \
	$(MAKE) --no-print-directory install || { eval "$$stop"; exit 1; }; touch $(INSTALLED); \
	LLMCOURSE_GGUF_ENGINE_STATUS=$(ENGINE_STATUS) $(OFFLINE) $(BIN)/llmcourse demo; demo=$$?; \
	wait $$engine; built=$$(cat $(ENGINE_STATUS)); rm -f $(ENGINE_STATUS) $(INSTALLED); \
	test "$$built" = 0 || { echo "the GGUF engine's build failed:"; tail -40 $(VENV)/gguf-engine.log; exit 1; }; \
	exit $$demo

# The GGUF engine compiles (niced) and the extras' environments install while the tests that need
# neither run; the `gguf` tests run after it, in a second pytest session, and each extra's tests in its
# own environment, all sharing the first session's lab models.
test: install llama-cpp-sdist
	@echo "building the GGUF engine and the extras' environments in the background (log: $(VENV)/background.log)"
	@$(MAKE) --no-print-directory gguf-engine extras > $(VENV)/background.log 2>&1 & engine=$$!; \
	home=$$(mktemp -d); \
	LLMCOURSE_TEST_HOME=$$home LLMCOURSE_TEST_DEMO_SKIP=gguf $(SDIST_PATH) $(OFFLINE) $(BIN)/python -m pytest -q -m "$(NOT_GPU) and not gguf and not gptq and not hqq" --durations=15; first=$$?; \
	wait $$engine || { tail -40 $(VENV)/background.log; rm -rf $$home; exit 1; }; \
	LLMCOURSE_TEST_HOME=$$home $(SDIST_PATH) $(OFFLINE) $(BIN)/python -m pytest -q -m "$(NOT_GPU) and gguf and not gptq and not hqq" --durations=10; second=$$?; \
	status=0; for extra in $(EXTRAS); do \
		LLMCOURSE_TEST_HOME=$$home LLMCOURSE_TEST_DEMO_SKIP=gguf $(SDIST_PATH) $(OFFLINE) $(VENV)-$$extra/bin/python -m pytest -q -m "$(NOT_GPU) and $$extra" --durations=5 || status=1; \
	done; \
	rm -rf $$home; test $$first -eq 0 -a $$second -eq 0 -a $$status -eq 0

# The inner loop: no training, no GGUF engine, no trained lab model (a few minutes).
test-fast: install llama-cpp-sdist
	LLMCOURSE_TEST_FAST=1 $(SDIST_PATH) $(OFFLINE) $(BIN)/python -m pytest -q -m "$(NOT_GPU) and not slow and not gguf" --durations=5

# GPU-marked tests, on a CUDA machine (pytest's exit code 5, "no tests collected", is not a failure).
test-gpu: install gguf-engine
	$(SDIST_PATH) $(OFFLINE) $(BIN)/python -m pytest -q -m gpu || [ $$? -eq 5 ]

clean:
	rm -rf $(VENV) $(foreach extra,$(EXTRAS),$(VENV)-$(extra)) .pytest_cache
