# Relay: `make demo`, `make test`, `make bench` (`bench-science`), `make gpu-check`. Each sets up its virtualenv itself
# (Python 3.11 + make are all it needs).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

GPU_VENV := .venv-gpu
GPU_BIN := $(GPU_VENV)/bin
GPU_STAMP := $(GPU_VENV)/.installed

.PHONY: demo test test-unit test-cluster lint bench bench-science install gpu-check gpu-wheels clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/relay run pipelines/configs/crest_digits.yaml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The node- and head-loss tests of the cluster tier (marker cluster_faults) take about 8 minutes on 2 cores,
# more than `make test` has left under its 40-minute budget: `make test-cluster` runs the whole tier.
# The suite runs on two processes at once (pytest-xdist). A test that starts Ray keeps about half of the two
# cores idle (process start-up, waits on Ray), so two at a time take about 0.7 of the time one at a time did.
# --dist loadscope gives each process whole modules, so a module's shared set-up (a Tune sweep) runs once,
# and the cluster tier goes to one process whole, so its stack starts once (tests/conftest.py). Units go out
# by test count, which mixes unit and integration modules on the two processes; in collection order
# (--no-loadscope-reorder: cluster, integration, unit) two integration modules ran side by side, and a
# CI run took 2 minutes longer.
# Tests take free ports, write only under their own tmp_path and never run `ray stop`, so two Rays can run side by side.
test: install lint
	$(BIN)/python -m pytest -q -n 2 --dist loadscope --durations=25 -m "not cluster_faults"

test-cluster: install
	$(BIN)/python -m pytest -q --durations=25 tests/cluster

test-unit: install
	$(BIN)/python -m pytest -q -n 2 -m "not integration"

# The GPU tier and the GPU benchmarks (benchmarks/gpu_check.py): one table, benchmarks/results/gpu_check.json.
# .venv-gpu also sees the packages of the Python that creates it (a .pth file; that Python may itself be a
# virtualenv, as on GPU images), so a CUDA build of torch already there is used instead of downloading
# another 3 GB; pip adds what is missing. If the install fails, the check runs with what the machine has
# and its table says which parts could not run.
#
# A GPU machine that reaches no package registry: make the wheels where one is reachable (`make gpu-wheels`:
# Ray, pydantic and the few packages of theirs a CUDA image lacks, for GPU_PYTHON_VERSION, 3.12 unless
# set; about 37 MB in .gpu-wheels), carry that folder there, and run `make gpu-check WHEELS=.gpu-wheels`: it
# installs them with --no-index into .gpu-site and runs the check on that machine's own python3
# (GPU_PYTHON), the one with the CUDA build of torch. GPU_CHECK_ARGS go to gpu_check.py (`--device cpu`:
# a dry run of every part on the CPU).
GPU_PYTHON ?= python3
GPU_PYTHON_VERSION ?= 3.12
GPU_CHECK_ARGS ?=

$(GPU_BIN)/python:
	$(PYTHON) -m venv --system-site-packages $(GPU_VENV)
	$(PYTHON) -c "import site; print(chr(10).join(site.getsitepackages()))" \
	  > "$$($(GPU_BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/host-packages.pth"

$(GPU_STAMP): pyproject.toml | $(GPU_BIN)/python
	if $(GPU_BIN)/python -m pip install --quiet --retries 2 --timeout 20 -e ".[test,gpu]"; then touch $(GPU_STAMP); \
	else echo "gpu-check: could not install every dependency; running with what this machine has"; fi

ifdef WHEELS
gpu-check:
	$(GPU_PYTHON) -m pip install --quiet --no-index --no-deps --no-compile --upgrade --target .gpu-site $(WHEELS)/*.whl
	PYTHONPATH=$(CURDIR):$(CURDIR)/.gpu-site $(GPU_PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)
else
gpu-check: $(GPU_STAMP)
	PYTHONPATH=$(CURDIR) $(GPU_BIN)/python benchmarks/gpu_check.py $(GPU_CHECK_ARGS)
endif

gpu-wheels: install
	$(BIN)/python benchmarks/gpu_wheels.py --out .gpu-wheels --python-version $(GPU_PYTHON_VERSION)

# The engine's speed and memory (minutes each); the science protocols and method tables take hours on
# 2 CPU cores, so they have their own target; gpu_check.py is `make gpu-check`, gpu_wheels.py `make gpu-wheels`.
SCIENCE_BENCHMARKS := reference_crest science science_ablation methods
ENGINE_BENCHMARKS := $(filter-out _% gpu_check gpu_wheels $(SCIENCE_BENCHMARKS),$(basename $(notdir $(wildcard benchmarks/*.py))))

bench: install
	@for name in $(ENGINE_BENCHMARKS); do echo "== benchmarks/$$name.py"; $(BIN)/python benchmarks/$$name.py || exit 1; done

bench-science: install
	@for name in $(SCIENCE_BENCHMARKS); do echo "== benchmarks/$$name.py"; $(BIN)/python benchmarks/$$name.py || exit 1; done

clean:
	rm -rf $(VENV) $(GPU_VENV) .gpu-site .gpu-wheels relay-workspace
