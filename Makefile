# `make run` trains the default model on MNIST; `make test` runs the test suite;
# `make bench` measures time to accuracy against the tutorial recipe (BENCH="--only mnist" for part);
# `make bench-serve` load-tests the prediction service on this machine.
# Both create .venv and install the package into it when it is missing or pyproject.toml changed.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench bench-serve

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/imgcls train

# Two pytest processes, whole files each (their module fixtures train once): 1.8x sooner on 2 cores.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

# CIFAR-10 comes from the cache or, for developers and CI, the JPEG archive beside the project.
bench: $(STAMP)
	$(VENV)/bin/imgcls bench --cifar-dir ../shared/datasets/cifar10-jpg.tar.gz $(BENCH)

bench-serve: $(STAMP)
	$(PY) -m imgcls.bench.load
