# One-command set-up: every target creates .venv from the exact lock when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup test quick theory clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench,tune,trackers,analysis]'
	touch $@

test: setup
	$(BIN)/pytest -q

clean-venv:
	rm -rf $(VENV)

# The embedded default: a ~5-minute CPU sweep and its report (prints where report.html is).
quick: setup
	$(BIN)/sambench run benchmarks/quick.yaml --report

# The paper's theory experiments (Figures 1-3) and their reports, a few minutes on a CPU.
theory: setup
	for fig in fig1_deterministic fig2_decreasing fig3_importance; do \
	  $(BIN)/sambench run benchmarks/paper/$$fig.yaml --results benchmarks/paper/results || exit 1; done
	for sweep in fig1-deterministic fig2-decreasing fig3-importance; do \
	  $(BIN)/sambench report benchmarks/paper/results/$$sweep || exit 1; done
