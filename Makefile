# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench screenshots clean lint

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(PY) main.py

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen OPENBLAS_NUM_THREADS=1 $(PY) -m pytest
	$(VENV)/bin/lint-imports

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(PY) bench/core.py
	OPENBLAS_NUM_THREADS=1 $(PY) bench/ui.py
	OPENBLAS_NUM_THREADS=1 $(PY) bench/export.py
	OPENBLAS_NUM_THREADS=1 $(PY) bench/sweep.py

# the README's pictures, from the real window on a virtual X server
screenshots: $(STAMP)
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
