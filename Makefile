# Relay: `make demo`, `make test`, `make bench` (`bench-science`), `make gpu-check`. Each sets up its virtualenv itself
# (Python 3.11 + make are all it needs).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

GPU_VENV := .venv-gpu
GPU_BIN := $(GPU_VENV)/bin
GPU_STAMP := $(GPU_VENV)/.installed
WHEELS ?=

.PHONY: demo test test-unit test-cluster lint bench bench-science install gpu-check clean

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
test: install lint
	$(BIN)/python -m pytest -q --durations=25 -m "not cluster_faults"

test-cluster: install
	$(BIN)/python -m pytest -q --durations=25 tests/cluster

test-unit: install
	$(BIN)/python -m pytest -q -m "not integration"

# The GPU tier and the GPU benchmarks (benchmarks/gpu_check.py): one table, benchmarks/results/gpu_check.json.
# .venv-gpu also sees the packages of the Python that creates it (a .pth file; that Python may itself be a
# virtualenv, as on GPU images), so a CUDA build of torch already there is used instead of downloading
# another 3 GB; pip adds what is missing. Offline, point WHEELS at a folder of wheels (`make gpu-check
# WHEELS=DIR`); if the install still fails, the check runs with what the machine has and its table says
# which parts could not run.
$(GPU_BIN)/python:
	$(PYTHON) -m venv --system-site-packages $(GPU_VENV)
	$(PYTHON) -c "import site; print(chr(10).join(site.getsitepackages()))" \
	  > "$$($(GPU_BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/host-packages.pth"

$(GPU_STAMP): pyproject.toml | $(GPU_BIN)/python
	if $(GPU_BIN)/python -m pip install --quiet --retries 2 --timeout 20 \
	    $(if $(WHEELS),--no-index --find-links $(WHEELS)) -e ".[test,gpu]"; then touch $(GPU_STAMP); \
	else echo "gpu-check: could not install every dependency; running with what this machine has"; fi

gpu-check: $(GPU_STAMP)
	PYTHONPATH=$(CURDIR) $(GPU_BIN)/python benchmarks/gpu_check.py

# The engine's speed and memory (minutes each); the science protocols and method tables take hours on
# 2 CPU cores, so they have their own target; gpu_check.py is `make gpu-check`.
SCIENCE_BENCHMARKS := reference_crest science science_ablation methods
ENGINE_BENCHMARKS := $(filter-out _% gpu_check $(SCIENCE_BENCHMARKS),$(basename $(notdir $(wildcard benchmarks/*.py))))

bench: install
	@for name in $(ENGINE_BENCHMARKS); do echo "== benchmarks/$$name.py"; $(BIN)/python benchmarks/$$name.py || exit 1; done

bench-science: install
	@for name in $(SCIENCE_BENCHMARKS); do echo "== benchmarks/$$name.py"; $(BIN)/python benchmarks/$$name.py || exit 1; done

clean:
	rm -rf $(VENV) $(GPU_VENV) relay-workspace
