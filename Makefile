# Two commands do all set-up on a fresh machine:
#   make demo   train + evaluate a DenseVAE with an RNVP prior (K = 20) on MNIST, on the CPU
#   make test   the test suite
# Both create .venv idempotently (re-installed only when pyproject.toml changes).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch==2.13.0 resolves to the CPU build on the project's machines; on a CUDA machine,
# override with e.g. `make test TORCH=torch` to get the default (CUDA) build.
TORCH  ?= torch==2.13.0
DEMO_DIR ?= runs/demo-dense-rnvp
# Data: $VAEPRIOR_DATA if set; else the shared copy beside the checkout when there is one;
# else the loader downloads to ~/.cache/vaeprior.
ifeq ($(origin VAEPRIOR_DATA), undefined)
ifneq ($(wildcard ../shared/datasets/mnist),)
export VAEPRIOR_DATA := $(abspath ../shared/datasets)
endif
endif

.PHONY: venv demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	rm -rf $(DEMO_DIR)
	$(PY) -m vaeprior.fast train --model dense --prior rnvp --flow-depth 20 --dataset mnist \
		--strategy joint --epochs 5 --eval-samples 1000 --eval-limit 1000 --seed 0 --out $(DEMO_DIR)

test: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: venv
	$(PY) -m pytest bench --benchmark-enable -q

clean:
	rm -rf $(VENV) runs .pytest_cache .benchmarks
