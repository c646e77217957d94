# Two entry points for a fresh machine: `make demo` and `make test` (see README).
# Both create the virtual environment from the lock file when it is missing or stale.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test check lint audit bench clean

# Test processes (pytest-xdist workers) for `make test` and `make check`; WORKERS=0 runs in one process.
WORKERS ?= 2
PYTEST   = $(BIN)/pytest -q -p no:cacheprovider -n $(WORKERS)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cluster-eval demo

# Every test: both databases, the Prefect servers, the browser.
test: $(STAMP)
	$(PYTEST)

# Style, complexity (ruff C901) and types (mypy, configured in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check flows tasks schemas deployments cli tests benchmarks
	$(BIN)/mypy

# The quick loop: lint, then every test that needs no Prefect server and no command-line process.
check: lint
	$(PYTEST) -m "not e2e"

# Known vulnerabilities of every pin in requirements.lock (pip-audit; .ci/run runs it too).
audit: $(STAMP)
	$(BIN)/python .ci/audit-deps

# The ingest benchmark through the real command (README "Benchmarks"): SIZES in families; with
# BENCH_POSTGRES_URL (or env CLUSTER_EVAL_BENCH_POSTGRES_URL) the sizes up to 100 000 run on PostgreSQL too.
SIZES ?= 10000 100000 1000000
BENCH_POSTGRES_URL ?=
bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py --sizes $(SIZES) $(if $(BENCH_POSTGRES_URL),--postgres-url $(BENCH_POSTGRES_URL))

clean:
	rm -rf $(VENV) var
