# make test / make demo / make bench. GPU users: make MXNET=mxnet-cu112 demo
PYTHON ?= python3
MXNET ?= mxnet
MXNET_VERSION ?= 1.9.1
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(MXNET)-$(MXNET_VERSION)

.PHONY: install test demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall when the dependencies or the chosen MXNet wheel change.
$(STAMP): pyproject.toml | $(PY)
	@for other in mxnet mxnet-cu112; do \
	  if [ "$$other" != "$(MXNET)" ] && $(PY) -m pip show --quiet $$other >/dev/null 2>&1; then \
	    $(PY) -m pip uninstall --quiet --yes $$other; fi; done
	$(PY) -m pip install --quiet "$(MXNET)==$(MXNET_VERSION)" -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Two pytest workers with one OpenMP thread each: on 2 cores this halves the suite's time against one
# worker with two threads (subprocess tests leave cores idle while they start and wait).
test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile tests

demo: install
	PYTHON=$(abspath $(PY)) ./sh_train.sh --demo

bench: install
	$(PY) benchmarks/bench_inference.py
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_scaling.py
	$(PY) benchmarks/bench_precision.py
	$(PY) benchmarks/bench_threads.py
	$(PY) benchmarks/bench_defaults.py

clean:
	rm -rf $(VENV) runs build *.egg-info
