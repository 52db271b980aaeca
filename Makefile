# Quick start: `make demo` (set up, then train DeNetDM on Colored MNIST) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Offline machines keep a copy of real MNIST beside the checkout (../shared/data/mnist);
# elsewhere DENETDM_DATA stays unset and MNIST is downloaded into the per-user cache.
SHARED_DATA := $(wildcard ../shared/data/mnist)
ifneq ($(SHARED_DATA),)
export DENETDM_DATA ?= $(abspath ../shared/data)
endif

.PHONY: demo test benchmark clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'
	# Frost textures of CIFAR-10-C; --no-deps keeps its non-headless OpenCV out.
	$(BIN)/pip install --no-deps 'imagecorruptions>=1.1'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/denetdm train --preset colored_mnist_demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest

benchmark: $(BIN)/.installed
	$(BIN)/python benchmarks/paper_colored_mnist.py

clean:
	rm -rf $(VENV) build src/*.egg-info
