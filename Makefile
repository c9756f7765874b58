# sliceai developer tasks. Everything runs from .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JOBS   ?= auto

.PHONY: assess all venv extras test-extras test test-slow lint typecheck unit demo bench soak protos protos-check model evaluate oracle research-test e2e ryu-check clean constraints

all: test

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,controller,rest]'
	touch $(STAMP)

venv: $(STAMP)

# The optional extras (sliceai[scale]: Ray, pyarrow; sliceai[federated]: flwr[simulation]) on
# top of the base venv, at the pins in constraints.txt. make test runs without them.
EXTRAS_STAMP := $(VENV)/.installed-extras
$(EXTRAS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,controller,rest,scale,federated]'
	touch $(EXTRAS_STAMP)

extras: $(EXTRAS_STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Tests marked slow (more than about 5 s each) run in `make test-slow`, not here.
unit: $(STAMP)
	$(VENV)/bin/pytest -n $(JOBS) -m "not ovs and not slow and not scale and not federated"

# The extras' tests (markers scale, federated), after installing the extras; fails rather than
# skips if they are missing.
test-extras: $(EXTRAS_STAMP)
	$(PY) -c "import ray, pyarrow, flwr"
	$(VENV)/bin/pytest -n $(JOBS) -m "(scale or federated) and not ovs and not slow"

test: lint typecheck protos-check unit

# The federated ones after the rest, one at a time: a Flower simulation starts Ray, which
# gives up when its node is not up within 30 s (a CI run on 2 loaded cores hit that).
test-slow: $(STAMP)
	$(VENV)/bin/pytest -n $(JOBS) -m "slow and not ovs and not federated"
	$(VENV)/bin/pytest -m "slow and federated and not ovs"

demo: $(STAMP)
	$(VENV)/bin/sliceai demo

bench: $(EXTRAS_STAMP)
	$(VENV)/bin/sliceai bench --markdown BENCHMARKS.md

# Hostile load on `sliceai serve` (issue #29's cases at 10x) for SOAK_MINUTES (default 10):
# prints the honest controller's plans/s, decision p99 at 64 slices and the server's RSS growth.
SOAK_MINUTES ?= 10
soak: $(STAMP)
	$(PY) -m sims.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

# gRPC / protobuf code generated from proto/sliceai/v1/*.proto into sliceai/v1/.
PROTOS := $(wildcard proto/sliceai/v1/*.proto)
protos: $(STAMP)
	@if [ -n "$(PROTOS)" ]; then \
	  $(PY) -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS) && \
	  echo "regenerated $(PROTOS)"; \
	else echo "no protos yet"; fi

protos-check: $(STAMP)
	@if [ -n "$(PROTOS)" ]; then \
	  tmp=$$(mktemp -d) && \
	  $(PY) -m grpc_tools.protoc -Iproto --python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp $(PROTOS) && \
	  diff -r -x __init__.py -x __pycache__ -x '*.pyc' $$tmp/sliceai/v1 sliceai/v1 >/dev/null \
	    || { echo "generated protobuf code is stale: run 'make protos'"; rm -rf $$tmp; exit 1; }; \
	  rm -rf $$tmp; echo "protobuf code matches proto/"; \
	fi

# Rebuild the bundled forecast checkpoint (sliceai/data/model/) from the bundled scenarios:
# a seed ensemble of 4 networks (2 seeds, each with and without randomised scenario variants)
# and, for clocks below 30 s, one of 2 networks trained on 10 s traces (in fast/, fp16); each
# network on one torch thread, two at once (deterministic on the CPU; about 40 minutes on 2 cores).
model: $(STAMP)
	$(PY) -m research.forecast.default_model

# Held-out forecast accuracy (CRPS, pinball, coverage against the baselines, on a 60 s and a
# 10 s clock) into BENCHMARKS.md's "forecast accuracy (held-out)" section.
evaluate: $(STAMP)
	$(PY) -m research.forecast.accuracy --markdown BENCHMARKS.md

# The assessment (issue #28): every allocator replayed and the forecast scored on traces no
# setting was chosen on (bundled scenarios on new seeds and the independently written
# held-out family of sims/heldout, each with and without a x1.4 step, at 10 s and 1 s), into
# BENCHMARKS.md's "assessment" section. The traces are written to .assess/ first.
assess: $(STAMP)
	$(PY) -m sims.assess.suite --out .assess
	$(VENV)/bin/sliceai assess --manifest .assess/manifest.txt --no-progress --markdown BENCHMARKS.md

# The bound on any forecaster's held-out CRPS: the generator's own conditional law (an oracle
# that knows its latent state) against EWMA and the bundled model on both clocks, overall and
# by forecast step, into BENCHMARKS.md's "forecast oracle bound" section (about 5 minutes).
oracle: $(STAMP)
	$(PY) -m research.forecast.oracle --held-out --model bundled --by-step --markdown BENCHMARKS.md

# The studies' tests (research/tests: the session filter, the oracle, the checkpoint recipe);
# not part of `make test`, which runs tests/ only.
research-test: $(STAMP)
	$(VENV)/bin/pytest -n $(JOBS) research/tests

# OpenFlow end to end on a real Open vSwitch with hosts in network namespaces (root).
e2e: $(STAMP)
	bash sims/ovs/e2e.sh

# The controller app under Ryu 4.34 instead of os-ken, on a real Open vSwitch (root).
# Downloads ryu==4.34 into a throwaway venv (RYU_VENV=.ryu-venv keeps and reuses one);
# not part of `make test` or CI. See sims/ovs/README.md.
ryu-check: $(STAMP)
	bash sims/ovs/ryu-check.sh

# Freezes the venv with the extras installed, so their pins stay in constraints.txt.
constraints: $(EXTRAS_STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v -E '^(pip|setuptools|wheel)==' > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info
