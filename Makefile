# bpresearch: the two commands a fresh machine needs are `make sweep` and `make test`.
# Each creates .venv and installs the project (pinned by constraints.txt) the first time.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# Extras installed into .venv: the tests need ray (the Ray executor) and db (PostgreSQL);
# `make bench` needs bench (Ray Tune and Optuna, its peers; a few small packages beside ray);
# `make install EXTRAS=dev` gives a lighter environment (their tests then skip, the peers too).
EXTRAS  ?= dev,ray,db,bench
comma   := ,
STAMP   := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
# The embedded sqlite store, as the code's default (DEFAULT_URI in bpresearch/store/uri.py);
# override with MLFLOW_TRACKING_URI=...
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
EXPERIMENTS ?= experiments/seed-graph.toml experiments/seed-neuron.toml experiments/seed-neuron-two-weights.toml \
               experiments/neuron-random-vs-gd.toml \
               experiments/batch-vs-stochastic.toml experiments/linear-regression.toml \
               experiments/digits-mlp.toml
UI_PORT ?= 5000
# `make server`: a tracking server for one user on 127.0.0.1 (docs/scaling-out.md: a team's server).
SERVER_PORT      ?= 5001
SERVER_STORE     ?= sqlite:///mlflow-server.db
SERVER_ARTIFACTS ?= mlartifacts-server
# Both servers listen on this machine only unless given a host, e.g. `make ui UI_HOST=0.0.0.0`
# (the network then reaches them, without authentication).
UI_HOST     ?= 127.0.0.1
SERVER_HOST ?= 127.0.0.1

.PHONY: install test test-fast test-ui test-latest sweep ui server report bench clean clean-store

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

# `make test` runs everything (CI), the slow end-to-end tests included (kill -9, fault
# injection, concurrency, fuzzing); `make test-fast` skips them for the edit–test loop.
# Test files are spread over TEST_WORKERS processes (pytest-xdist; one file stays in one
# process, so a module's fixtures are built once); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# The newest releases of everything, without constraints.txt, in a venv of their own
# (.venv-latest, made anew each time), and the fast tests there: drift is seen before users
# see it. JAX 0.11 and later need Python >= 3.12: PY_LATEST is the newest Python 3.12+ on
# PATH or installed by pyenv, else $(PY).
PY_LATEST ?= $(shell for p in python3.14 python3.13 python3.12 \
                 $$(ls -d $$(pyenv root 2>/dev/null || echo /none)/versions/3.1[2-9]*/bin/python3 2>/dev/null \
                    | sort -rV) $(PY); do $$p -c 'import venv' >/dev/null 2>&1 && { echo $$p; break; }; done)
test-latest:
	rm -rf .venv-latest
	$(PY_LATEST) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip
	.venv-latest/bin/python -m pip install -q --upgrade -e '.[$(EXTRAS)]'
	@.venv-latest/bin/python -c 'import sys; from importlib.metadata import version as v; \
	  print("test-latest: Python " + sys.version.split()[0], *(f"{p} {v(p)}" for p in \
	  ("jax", "jaxlib", "optax", "mlflow", "mlflow-skinny", "numpy", "pandas")), sep=", ")'
	.venv-latest/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" -p no:cacheprovider

# The MLflow UI in headless Chromium (Debian's `chromium`; skipped without it, except in CI).
test-ui: $(STAMP)
	$(BIN)/python -m pytest -q -m ui

sweep: $(STAMP)
	$(BIN)/bpresearch sweep $(EXPERIMENTS)

# Prints the link to open (each experiment's run table, in model-training mode), then serves.
ui: $(STAMP)
	@$(BIN)/bpresearch list --links http://127.0.0.1:$(UI_PORT)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server \
	    --backend-store-uri $(MLFLOW_TRACKING_URI) --host $(UI_HOST) --port $(UI_PORT) --workers 1

# Sweeps log to it with MLFLOW_TRACKING_URI=http://127.0.0.1:$(SERVER_PORT); artifacts go
# through the server into SERVER_ARTIFACTS.
server: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server \
	    --backend-store-uri $(SERVER_STORE) --artifacts-destination $(SERVER_ARTIFACTS) \
	    --host $(SERVER_HOST) --port $(SERVER_PORT) --workers 1

# `make report UI_URL=http://127.0.0.1:5000`: the reports link to their runs in the MLflow UI
report: $(STAMP)
	$(BIN)/bpresearch report --out reports $(if $(UI_URL),--ui-url $(UI_URL))

bench: $(STAMP)
	$(BIN)/python -m bench.run --out reports/bench
	$(BIN)/python -m bench.scale --out reports/bench

# `make clean` removes what can be rebuilt (.venv, reports/, caches) and keeps the results:
# the MLflow store (mlflow.db, mlartifacts/). `make clean-store` deletes the store instead.
clean:
	rm -rf $(VENV) .venv-latest .pytest_cache .hypothesis reports
	@echo "Removed .venv, reports/ and test caches; kept the MLflow store (mlflow.db, mlartifacts/)."
	@echo "To delete the store and every logged run: make clean-store"

STORE_DB := $(patsubst sqlite:///%,%,$(MLFLOW_TRACKING_URI))
clean-store:
	@case "$(MLFLOW_TRACKING_URI)" in sqlite:///*) ;; \
	  *) echo "clean-store: deletes only a local sqlite store, not $(MLFLOW_TRACKING_URI)"; exit 2;; esac
	rm -rf $(STORE_DB) $(STORE_DB).lock $(dir $(STORE_DB))mlartifacts
	@echo "Deleted the MLflow store $(STORE_DB) and its mlartifacts/; kept .venv. The next make sweep trains everything."
