# SSuperGAN research kit. `make demo` and `make test` are all the set-up there is: both create .venv
# when it is missing and install the kit into it.
VENV        ?= .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
# The torch build to install. Here: a CUDA build of 2.14.1 that also runs on the CPU. On a GPU node
# with conda, use environment.yml instead.
TORCH_SPEC  ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?= -n 2

.PHONY: demo test lab bench venv clean-demo check-reverts

$(STAMP): pyproject.toml setup.py ssuper_lib/data/_native.c
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[notebooks,test]'
	@touch $(STAMP)

venv: $(STAMP)

## make demo: synthetic data -> notebooks 01..06 headlessly -> figures/, data_stats/, runs/ (FRESH=1 starts over)
demo: $(STAMP)
	$(PY) -m ssuper_lib.demo $(if $(FRESH),--fresh,) $(if $(SEEDS),--seeds $(SEEDS),)

## make test: the whole test suite, notebooks in smoke mode and the real-browser test included
test: $(STAMP)
	-@bash scripts/install_browser.sh
	$(PY) -m pytest $(PYTEST_ARGS)

## make check-reverts: revert each fix of docs/differences.md in a temporary copy (tests/reverts/*.patch) and
## check that its named tests fail (after checking they pass unpatched); one line per fix (caught / NOT caught),
## non-zero exit if any is missed; REVERTS="R8.1 N3" runs only the patches whose names start so
check-reverts:
	@test -x $(PY) || $(MAKE) venv
	$(PY) scripts/check_reverts.py --baseline $(REVERTS)

## make lab: JupyterLab on the kit's kernel
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

## make bench: all benchmarks, one table, data_stats/bench_*.csv
bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean-demo:
	rm -rf data/synthetic runs
