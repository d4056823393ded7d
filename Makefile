# Every target sets itself up on a fresh machine: a .venv with pinned packages.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench clean browser

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,ray,export]'
	@# An editable install skips the wheel's .pth: put it in place so `import keras` first finds JAX.
	$(BIN)/python -c "import shutil, sysconfig; shutil.copy('src/deepfit-keras-backend.pth', sysconfig.get_paths()['purelib'])"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/deepfit reproduce --demo --out runs/reproduce-demo

# The report test renders HTML in headless Chromium; install it where we can (root + apt), else it skips.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed: the report's browser test will skip"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_loop.py
	$(BIN)/python benchmarks/bench_groups.py

clean:
	rm -rf $(VENV) runs .pytest_cache
