# Every target sets itself up on a fresh machine: a .venv with the versions pinned in constraints.txt,
# installed by uv (seconds; pip-installed into the venv when uv is not on the PATH), or by pip (minutes)
# when uv cannot be had. Each target installs only what it runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# pyproject.toml's extras each set-up adds to the package. The demo needs none; the tests need the dev
# tools, Ray (its backend's tests) and the docs build (a test builds the site).
DEMO_EXTRAS :=
TEST_EXTRAS := dev,ray,docs,export
NOTEBOOK_EXTRAS := notebook

DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed
NOTEBOOK_STAMP := $(VENV)/.installed-notebook
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: demo test test-all setup setup-dev docs docs-serve notebook bench clean browser

# $(call install,EXTRAS): the package, editable, with those extras, every version from constraints.txt.
# uv: on the PATH, else installed into the venv by this Python's pip (its venv is made without pip: seeding
# pip there costs more than uv's whole install; uv adds pip after). Without uv: pip, in the venv.
# An editable install skips the wheel's .pth: copy it in place so `import keras` first finds JAX.
# Bytecode compiled at install (uv's --compile-bytecode; compileall for deepfit's own editable source): where
# PYTHONDONTWRITEBYTECODE is set, as on this kind of machine, every process would otherwise compile Keras,
# JAX and deepfit from source: `import deepfit` 11.6 s instead of 3.1 s here.
define install
	test -x $(BIN)/python || $(PYTHON) -m venv --without-pip $(VENV)
	@spec='.$(if $(strip $(1)),[$(strip $(1))])'; \
	if command -v uv >/dev/null 2>&1; then uv=uv; \
	elif test -x $(BIN)/uv || $(PYTHON) -m pip $(PIP_QUIET) --python $(BIN)/python install -c constraints.txt uv || \
	  { $(BIN)/python -m ensurepip --default-pip >/dev/null && \
	    $(BIN)/python -m pip $(PIP_QUIET) install -c constraints.txt uv; }; \
	then uv=$(BIN)/uv; else uv=; fi; \
	if [ -n "$$uv" ]; then \
	  echo "$$uv pip install -c constraints.txt -e '$$spec' pip"; \
	  $$uv pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt -e "$$spec" pip && exit 0; \
	  echo "uv could not install it: trying pip (a few minutes)"; \
	else echo "uv cannot be had here: installing with pip (a few minutes)"; fi; \
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade --default-pip >/dev/null; \
	echo "pip install -c constraints.txt -e '$$spec'"; \
	$(BIN)/python -m pip $(PIP_QUIET) install -c constraints.txt -e "$$spec"
	$(BIN)/python -c "import shutil, sysconfig; shutil.copy('src/deepfit-keras-backend.pth', sysconfig.get_paths()['purelib'])"
	$(BIN)/python -m compileall -q src
endef

$(DEMO_STAMP): pyproject.toml constraints.txt
	$(call install,$(DEMO_EXTRAS))
	touch $@

$(STAMP): pyproject.toml constraints.txt
	$(call install,$(TEST_EXTRAS))
	touch $@ $(DEMO_STAMP)

$(NOTEBOOK_STAMP): pyproject.toml constraints.txt
	$(call install,$(NOTEBOOK_EXTRAS))
	touch $@

setup: $(DEMO_STAMP)       # the package and what it needs to train, compare and report
setup-dev: $(STAMP)        # + the tests, Ray and the docs build

demo: $(DEMO_STAMP)
	$(BIN)/deepfit reproduce --demo --out runs/reproduce-demo

# The report test renders HTML in headless Chromium; install it where we can (root + apt), else it skips.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed: the report's browser test will skip"

# The whole suite on two workers (one a core); it builds the docs site too (tests/test_docs_site.py).
# worksteal: a worker that runs out of tests takes half of the other's queue, so the end-to-end tests
# at the end of the run do not leave one core idle while the other works through them.
# The default run leaves out the tests marked slow (end-to-end at a real size, kills at random points,
# Ray, the notebook in a kernel); test-all runs them too.
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not slow"

test-all: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

# NO_MKDOCS_2_WARNING: Material's banner about its successor, printed on every build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# docs/chapter.ipynb in JupyterLab; the kernel "Python 3" there is this .venv.
notebook: $(NOTEBOOK_STAMP)
	$(BIN)/jupyter lab docs/chapter.ipynb

bench: $(DEMO_STAMP)
	$(BIN)/python benchmarks/bench_loop.py
	$(BIN)/python benchmarks/bench_groups.py

clean:
	rm -rf $(VENV) runs site .pytest_cache
