# Every target builds its own virtualenv from nothing; only python3 (>= 3.11) must exist.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv test lint demo bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("jogger needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

demo: venv
	$(BIN)/python -m jogger.demo

bench: venv
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
