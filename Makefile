# tl-course: `make course` runs the whole course, `make test` runs every test (CI calls it).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tl-course-installed
# Notebook kernels in tests run single-threaded (KERNEL_THREADS=1, for PyTorch, OpenMP and BLAS):
# training results depend on the number of threads (summation order), and the committed outputs
# were executed the same way (`make execute`), so nbval reproduces them on a machine of any size.
# NBVAL_WORKERS notebooks then run at a time (pytest-xdist, one notebook per worker, the longest
# first, see conftest.py). Measured on the 2-core CI machine, two single-threaded kernels do more
# work per second than one kernel on two threads. NBVAL_WORKERS=0: one notebook at a time.
KERNEL_THREADS ?= 1
NBVAL_WORKERS  ?= 2
THREADS_ENV := OMP_NUM_THREADS=$(KERNEL_THREADS) OPENBLAS_NUM_THREADS=$(KERNEL_THREADS) MKL_NUM_THREADS=$(KERNEL_THREADS)
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg --nbval-cell-timeout 900 -p no:cacheprovider \
          $(if $(filter-out 0,$(NBVAL_WORKERS)),-n $(NBVAL_WORKERS) --dist loadfile --no-loadscope-reorder)
# Notebooks whose results depend on the data mode (a real dataset vs the offline fallback): the one
# list is each notebook's metadata (tl_course.data), read by `tl-course notebooks --data-dependent`.
DATA_NOTEBOOKS = $(shell $(BIN)/tl-course notebooks --data-dependent)

# `make course LANG=zh` / `make student LANG=zh`: the Chinese edition (translated markdown from
# notebooks/zh/*.toml, same code). LANG is also the locale variable of the environment: only the
# value zh selects the edition, and it is then not passed on as a locale (env -u LANG).
EDITION  := $(if $(filter zh,$(LANG)),zh,en)
SUFFIX   := $(if $(filter zh,$(EDITION)),-zh,)
LANG_ENV := $(if $(filter zh,$(EDITION)),env -u LANG,)

.PHONY: venv course test test-unit test-notebooks test-offline lab student slides execute clean-data book help
help:
	@echo "make course         install into $(VENV)/ and execute every notebook into build/ (summary at the end)"
	@echo "make course LANG=zh the Chinese edition, executed into build/course-zh/"
	@echo "make book           the course as a static book, English and 中文, into build/book/ (no execution)"
	@echo "make test           install into $(VENV)/ and run unit tests + nbval over notebooks/"
	@echo "make test-offline   unit tests + the data notebooks offline on fallback data (after test-notebooks)"
	@echo "make lab            JupyterLab on notebooks/"
	@echo "make student        write the student edition to build/student/ (LANG=zh: build/student-zh/)"
	@echo "make slides         add slide metadata (present with jupyterlab-rise: Alt+R) to every notebook"

# --no-compile: byte-compiling all of torch at install time cost about 80 s on the 2-core machine;
# Python compiles the modules actually imported on first use instead, and keeps them: that needs
# bytecode writing on (PYTHONDONTWRITEBYTECODE unset), or every notebook kernel and every command
# compiles torch's modules again (11 s instead of 5 s to import torch and torchvision here).
unexport PYTHONDONTWRITEBYTECODE
$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

venv: $(STAMP)

course: venv
	$(LANG_ENV) $(BIN)/tl-course course --lang $(EDITION) --out build/course$(SUFFIX)

# `make test` runs two passes, each NBVAL_WORKERS notebooks (or test files) at a time:
# 1. test-notebooks: nbval over every notebook on the real data (the mirror, or downloads), outputs
#    compared; every stored result goes to a folder of its own (TL_COURSE_RESULTS), emptied first.
# 2. test-offline: offline and without the mirror, the unit tests and, again, the data-dependent
#    notebooks (07+, listed by their metadata), now on their fallback data (outputs unchecked but
#    for `# NBVAL_CHECK_OUTPUT` cells; every cell must run and every in-notebook assertion hold).
#    This pass runs in PRESENT mode on pass 1's results: a section keyed by the same parameters and
#    the same data contents (10's parameter-efficient tuning on digits_m) is the very computation
#    pass 1 checked, so it is replayed; everything that depends on the fallback data is computed.
TEST_RESULTS := build/test-results

test: test-notebooks test-offline

test-notebooks: venv
	rm -rf $(TEST_RESULTS)
	env TL_COURSE_RESULTS=$(CURDIR)/$(TEST_RESULTS) $(THREADS_ENV) $(BIN)/python -m pytest -q $(NBVAL) notebooks

test-offline: venv
	env -u TL_COURSE_MIRROR TL_COURSE_OFFLINE=1 TL_COURSE_PRESENT=1 TL_COURSE_RESULTS=$(CURDIR)/$(TEST_RESULTS) \
	  $(THREADS_ENV) $(BIN)/python -m pytest -q --durations=15 $(NBVAL) tests $(DATA_NOTEBOOKS)

# The unit tests alone.
test-unit: venv
	$(BIN)/python -m pytest -q --durations=15 $(if $(filter-out 0,$(NBVAL_WORKERS)),-n $(NBVAL_WORKERS)) tests

lab: venv
	$(BIN)/jupyter lab notebooks

student: venv
	$(LANG_ENV) $(BIN)/tl-course student build/student$(SUFFIX) --lang $(EDITION)

# The book: every notebook with its committed outputs (nothing is executed), the guide and the
# glossary, English in build/book/, Chinese in build/book/zh/ (tl_course/course/book.py).
book: venv
	$(BIN)/tl-course book --out build/book

# Slide metadata (RISE / jupyterlab-rise) on every notebook's title and sections; metadata only, no re-execution.
slides: venv
	$(BIN)/tl-course slides

clean-data:
	find data -mindepth 1 ! -name README.md -delete

# Execute notebooks in place (fresh kernel, top to bottom, KERNEL_THREADS threads as in the tests) before
# committing them: make execute NB=notebooks/01_*.ipynb
execute: venv
	$(BIN)/tl-course execute --threads $(KERNEL_THREADS) $(NB)
