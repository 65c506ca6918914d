# MDNet, step by step. Quick start: `make lab` (learn) and `make test` (check).
# Every target creates .venv with python -m venv + pip when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help venv lab test quick unit notebooks references check-references run runtimes sync bench site student clean
.PHONY: zh student-zh zh-sync zh-check

help:
	@echo "make lab    open JupyterLab on notebooks/ (installs .venv first if needed)"
	@echo "make test   unit tests + every notebook under nbval, fast mode"
	@echo "make quick  the unit tests but the slow and browser ones (under a minute), fast mode"
	@echo "make run    execute every notebook in place, full mode (regenerates committed outputs; records each time)"
	@echo "make runtimes  time every notebook in fast mode, writing nothing back (notebooks/runtimes.json)"
	@echo "make sync   pair every notebook with its script in notebooks/py/ (jupytext), after an edit on either side"
	@echo "make bench  print the benchmarks as JSON"
	@echo "make references        train the reference models into checkpoints/ (hours on a CPU; resumable)"
	@echo "make check-references  every shipped reference loads, is fresh and reproduces its figures (part of test)"
	@echo "make site   render the course as static HTML into build/site (open build/site/index.html)"
	@echo "make student write the student edition into student/ (solutions replaced by stubs, outputs cleared)"
	@echo "make zh     write the Chinese edition into build/zh (README.zh.md); make student-zh: its student edition"
	@echo "make zh-sync NN=03  refresh notebooks/zh/03_*.yml after an English edit; make zh-check: what is left"
	@echo "make clean  remove .venv, generated data and runs"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing mdnet_utils and its dependencies into $(VENV) (about 1-2 minutes the first time)"
	$(BIN)/python -m pip install -qq -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

# JupyterLab refuses to run as root unless told to (containers often are root).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(ROOT_FLAG)

# --durations: CI prints the slowest tests and notebook cells, to watch its 20-minute budget.
unit: $(STAMP)
	MDNET_FAST=1 $(BIN)/python -m pytest tests -q $(XDIST) --dist worksteal --durations=15

# Two workers: the unit tests spend most of their time starting interpreters (torch's import), which one core
# does while the other computes. The notebooks run two at a time, one file each, after the fast data set they
# share is built once (so no two kernels build it at the same moment), each kernel on one thread (two kernels of
# two threads each would fight over two cores).
XDIST := -n 2
FAST_DATA := from mdnet_utils import config; from mdnet_utils.data import make_synthetic_dataset as build; \
	build(config.dataset_dir, n_images=config.n_images, image_size=config.image_size, seed=config.seed)

notebooks: $(STAMP)
	MDNET_FAST=1 $(BIN)/python -c "$(FAST_DATA)"
	MDNET_FAST=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider $(XDIST) --dist loadfile notebooks/ -q --durations=9

check-references: $(STAMP)
	$(BIN)/python -m mdnet_utils reference --check

references: $(STAMP)
	$(BIN)/python -m mdnet_utils reference

test: unit check-references notebooks

quick: $(STAMP)
	MDNET_FAST=1 $(BIN)/python -m pytest tests -q -m "not slow and not browser"

run: $(STAMP)
	$(BIN)/python -m mdnet_utils notebooks run

runtimes: $(STAMP)
	$(BIN)/python -m mdnet_utils notebooks run --fast

bench: $(STAMP)
	$(BIN)/python -m mdnet_utils bench data
	$(BIN)/python -m mdnet_utils bench resnet
	$(BIN)/python -m mdnet_utils bench train
	$(BIN)/python -m mdnet_utils bench data-path

sync: $(STAMP)
	$(BIN)/jupytext --sync notebooks/*.ipynb

site: $(STAMP)
	$(BIN)/python -m mdnet_utils site

student: $(STAMP)
	$(BIN)/python -m mdnet_utils student

# The Chinese edition (README.zh.md): notebooks/zh/NN_slug.yml hold the translations, keyed by the English's hash.
# Not `make student LANG=zh`: LANG is the shell's locale variable, which make would read from the environment.
zh: $(STAMP)
	$(BIN)/python -m mdnet_utils zh

student-zh: $(STAMP)
	$(BIN)/python -m mdnet_utils zh student

zh-sync: $(STAMP)
	$(BIN)/python -m mdnet_utils zh sync $(NN)

zh-check: $(STAMP)
	$(BIN)/python -m mdnet_utils zh check $(NN)

clean:
	rm -rf $(VENV) runs data/synthetic-* data/.synthetic-* data/your-own-data-*
