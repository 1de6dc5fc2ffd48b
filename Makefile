# flowedu: one command to set up and run each thing. See README.md.
#   make dashboard   set up, then serve the Voila dashboard on http://127.0.0.1:8866
#   make test        set up, then run every test (lint, unit, notebooks, browser)
#   make lab         set up, then open the notebooks in JupyterLab

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8866
# Extra pip options, e.g. PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu"
# to get the small CPU build of torch on a Linux machine without a GPU.
PIP_EXTRA ?=

.PHONY: setup dashboard lab test lint unit notebooks chromium benchmarks pretrain clean

# Re-install only when the dependencies change.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "flowedu needs Python 3.10+"'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and on its own: a range capped below 2.14 picks the CPU wheel where one is
	# offered, instead of a CUDA build of several GB.
	$(BIN)/python -m pip install --quiet $(PIP_EXTRA) "torch>=2.2,<2.14"
	$(BIN)/python -m pip install --quiet $(PIP_EXTRA) -e ".[test]"
	touch $@

setup: $(VENV)/.installed

dashboard: setup
	PYTHON=$(BIN)/python scripts/serve_dashboard.sh $(PORT)

lab: setup
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 notebooks/

# The browser tests drive Debian's chromium; install it when it is missing.
chromium:
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: setup
	$(BIN)/python -m pytest tests -q

# The course notebooks are checked twice: as they run here, then under another CPU code path
# (no AVX) and another torch thread count. A compared output must hold on any machine.
NBVAL := $(BIN)/python -m pytest -q -p no:cacheprovider --nbval --nbval-current-env \
	--nbval-sanitize-with tests/nbval_sanitize.cfg

notebooks: setup
	$(NBVAL) notebooks/0*.ipynb
	ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(NBVAL) notebooks/0*.ipynb
	$(BIN)/python -m pytest -q --nbval-lax --nbval-current-env notebooks/dashboard.ipynb

test: setup chromium lint notebooks unit

benchmarks: setup
	$(BIN)/python benchmarks/dashboard_fps.py

pretrain: setup
	$(BIN)/python -m flowedu.pretrain

clean:
	rm -rf $(VENV) artifacts .pytest_cache .ruff_cache
