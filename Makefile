# HAECS (haecs.lvs) developer and CI entry points.  GNU make.
#
#   make test      every gate, in order, from a clean clone (what .ci/run runs)
#   make help      list the targets
#
# Every target uses the project venv in .venv (made by `make venv`); nothing
# is installed into the system Python.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
# Python 3.11 explicitly when there is one: ansible-core 2.19 and the pins in
# requirements*.txt were chosen for it (ansible-core 2.20 needs 3.12+).
PYTHON ?= $(shell { command -v python3.11 >/dev/null && python3.11 -c 'import sys; print(sys.executable)'; } 2>/dev/null || command -v python3)

BUILD := $(ROOT)/build
COLLECTIONS := $(BUILD)/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/haecs/lvs
SANITY_ROOT := $(BUILD)/sanity/ansible_collections/haecs/lvs
DOCS_OUT := $(BUILD)/docs/modules

# Minimum line+branch coverage of the IPVS engine (plugins/module_utils/ipvs/ and its
# Ansible glue _ipvs_*.py).
COV_MIN ?= 85
# Files the threshold applies to; the report still shows all of module_utils.
COV_ENGINE := plugins/module_utils/ipvs/*.py,plugins/module_utils/_ipvs*.py

# Python sources for ruff (directories that exist only).
RUFF_DIRS := $(wildcard plugins tests monitor bench)
# Ansible content for ansible-lint (directories that exist only).
LINT_ANSIBLE_DIRS := $(wildcard roles playbooks lab extensions/molecule)
MODULES := $(sort $(basename $(notdir $(wildcard plugins/modules/*.py))))
FILTERS := $(sort $(basename $(notdir $(wildcard plugins/filter/*.yml))))
CONNECTIONS := $(sort $(basename $(notdir $(wildcard plugins/connection/*.py))))
ROLES := $(sort $(notdir $(wildcard roles/*)))

STAGE := $(ROOT)/tests/stage
# Two stages at once: one on the host's CPUs, one in a test kernel (one CPU).
TOGETHER := $(ROOT)/tests/stages-together

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
# Keep ansible's own scratch files out of $HOME and the tree.
export ANSIBLE_LOCAL_TEMP := /tmp/haecs-ansible-$(shell id -u)/tmp
export ANSIBLE_FORCE_COLOR := 0
export ANSIBLE_NOCOLOR := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv collection deps lint sanity unit coverage kernel-selftest kernel-engine monitor-kernel \
        integration lab lab-test lab-shell lab-failover collection-install integration-host qemu bench fresh-check \
        changelog-lint docs fragments fragment-check test clean distclean unit-monitor-oldest

help: ## list the targets
	@echo "HAECS make targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "} {printf "  %-18s %s\n", $$1, $$2}'
	@echo "Variables: COV_MIN=$(COV_MIN) (engine coverage floor), PYTHON=$(PYTHON)"

# ---------------------------------------------------------------- setup

# pip itself, pinned like everything else (the venv's bundled pip is older).
PIP_VERSION := 26.3
# This machine image's pip config lists local mirror folders that may not exist;
# pip warns once per package about them: drop that noise only.
PIP_NOISE := ^WARNING: Location 'file:.*' is ignored: it is neither a file nor a directory

# The stamp depends on the requirement files requirements-dev.txt includes:
# the venv is rebuilt only when they change (or when .venv is gone).
$(VENV)/.stamp: requirements.txt requirements-dev.txt tests/unit/requirements.txt
	@echo "== creating $(VENV) with $(PYTHON)"
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==$(PIP_VERSION) 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(BIN)/python -m pip install -q -r requirements-dev.txt 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	touch $@

venv: $(VENV)/.stamp ## create .venv with the pinned dev requirements

# ANSIBLE_COLLECTIONS_PATH=build/collections finds the collection through a
# symlink to the repo root (relative, so the tree can move).
$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../../.. $@

collection: $(COLLECTION_LINK) ## symlink build/collections/ansible_collections/haecs/lvs -> repo root

# Debian packages the gates themselves use (the kernel's are install-deps').
DEB_TOOLS := shellcheck

deps: venv collection ## venv + shellcheck + the test kernel's Debian packages
	@missing=""; for p in $(DEB_TOOLS); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "deps: installing$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "deps: missing$$missing (not root: install by hand)"; fi; \
	fi
	@if [ -x tests/kernel/install-deps ]; then \
	  tests/kernel/install-deps; \
	else \
	  echo "deps: tests/kernel/install-deps not there yet: kernel packages not installed"; \
	fi

# ---------------------------------------------------------------- gates

# mypy checks the files as the package Ansible imports them from
# (ansible_collections.haecs.lvs.plugins...), through the build/collections
# link, so relative and collection imports resolve.
PKG := ansible_collections.haecs.lvs.plugins
MYPY := MYPYPATH=$(COLLECTIONS) $(BIN)/mypy --explicit-package-bases
# ...and its messages name files by their repo path again.
UNLINK_PATHS := sed 's\#^build/collections/ansible_collections/haecs/lvs/\#\#'

# Every check runs even when an earlier one fails; the target fails if any did.
lint: venv collection ## ruff check + format check, mypy --strict on module_utils, ansible-lint
	@rc=0; \
	echo "ruff check $(RUFF_DIRS)"; \
	$(BIN)/ruff check --output-format concise $(RUFF_DIRS) || rc=1; \
	echo "ruff format --check $(RUFF_DIRS)"; \
	$(BIN)/ruff format --check --output-format concise $(RUFF_DIRS) || { rc=1; echo "lint: fix with: .venv/bin/ruff format (or see --diff)"; }; \
	if compgen -G 'plugins/module_utils/*.py' >/dev/null; then \
	  echo "mypy --strict plugins/module_utils"; \
	  $(MYPY) --strict -p $(PKG).module_utils | $(UNLINK_PATHS) || rc=1; \
	else echo "lint: no plugins/module_utils yet: mypy skipped"; fi; \
	if compgen -G 'plugins/modules/*.py' >/dev/null; then \
	  echo "mypy plugins/modules (not strict)"; \
	  $(MYPY) -p $(PKG).modules | $(UNLINK_PATHS) || rc=1; \
	fi; \
	if [ -d monitor/haecs_monitor ]; then \
	  echo "mypy --strict monitor"; \
	  MYPYPATH=$(COLLECTIONS):$(ROOT)/monitor $(BIN)/mypy --explicit-package-bases --strict -p haecs_monitor \
	    | $(UNLINK_PATHS) || rc=1; \
	fi; \
	scripts=$$(git ls-files --cached --others --exclude-standard | \
	  while IFS= read -r f; do [ -f "$$f" ] && head -n1 "$$f" | grep -qE '^#!.*[/ ](ba)?sh( |$$)' && echo "$$f"; done; true); \
	if command -v shellcheck >/dev/null; then \
	  echo "shellcheck" $$scripts; \
	  shellcheck $$scripts || rc=1; \
	else echo "lint: shellcheck not installed (make deps installs it): shell scripts not checked"; fi; \
	if [ -n "$(LINT_ANSIBLE_DIRS)" ]; then \
	  echo "ansible-lint --profile production $(LINT_ANSIBLE_DIRS)"; \
	  PATH="$(BIN):$$PATH" $(BIN)/ansible-lint --offline --profile production $(LINT_ANSIBLE_DIRS) || rc=1; \
	else echo "lint: no roles/ or playbooks/ yet: ansible-lint skipped"; fi; \
	[ $$rc -eq 0 ] || echo "lint: FAILED (see above)"; \
	exit $$rc

# ansible-test insists that the collection's physical path ends in
# ansible_collections/haecs/lvs (it uses the real cwd, so a symlink does not
# work), so sanity runs on a fresh copy of the tracked + untracked-not-ignored
# files in build/sanity/ (a throwaway git repo, so ansible-test sees exactly
# those files).
#
# No Docker: --venv runs ansible-test in a venv it makes from the .venv
# Python, and --requirements lets it install each test's pinned tools from
# PyPI into per-test venvs (cached under SANITY_HOME, so only the first run
# downloads).  The per-Python tests (compile, import) run for every Python
# ansible-test supports (3.8-3.13 for 2.19) that is on PATH: pyenv's
# versions are added to PATH when present; a missing version is skipped by
# ansible-test with a warning.  SANITY_PYTHON='--python 3.11' limits them.
#
# Every test runs except:
#   shellcheck   only when the shellcheck binary is missing (make deps
#                installs it).  It checks *.sh files; `make lint` also runs
#                shellcheck on every script with a sh/bash shebang.
# Files left out of the copy (SANITY_EXCLUDE):
#   tests/kernel/  the kernel runner, a host-side harness that is not part of
#                the collection (build_ignore in galaxy.yml) and keeps its own
#                conventions (for example #!/bin/bash for the guest's init);
#                `make lint` and `make kernel-selftest` cover it.
#   bench/         benchmark scripts, also not shipped (build_ignore); `make
#                lint` covers them.
# Measured on 2 cores: about 1.5-2 min from cold (venv downloads), under a
# minute warm.
SANITY_SKIP :=
SANITY_EXCLUDE := ^(tests/kernel|tests/docgen|tests/tooling|bench)/
SANITY_PYTHON ?=
# ansible-test's HOME: its venvs and caches live here, kept between runs
# (make clean removes them).  ansible-test bootstraps pip in each venv with a
# get-pip.py it downloads from a host these machines cannot reach; it takes a
# cached copy first, so we place tests/sanity/get-pip-offline.py there, which
# uses the interpreter's ensurepip and then PyPI.
SANITY_HOME := $(BUILD)/ansible-test-home
ANSIBLE_TEST_REQS = $(wildcard $(VENV)/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py)
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
SANITY_PYENV_PATH := $(shell ls -d $(PYENV_ROOT)/versions/3.*/bin 2>/dev/null | tr '\n' ':')

# The monitor runs on the director's own Python, 3.9 or newer
# (docs/design/monitor-deploy.md): its unit tests run on 3.9 too, from
# pyenv's 3.9 where there is one (the sanity tests use pyenv's versions).
MONITOR_OLDEST := 3.9
MONITOR_OLDEST_PYTHON := $(firstword $(wildcard $(PYENV_ROOT)/versions/$(MONITOR_OLDEST).*/bin/python))
# Under build/, which git, the collection's tarball and sanity leave out.
OLDEST_VENV := $(BUILD)/venv-monitor-$(MONITOR_OLDEST)

$(OLDEST_VENV)/.stamp: tests/unit/monitor/requirements-oldest.txt
	@echo "== creating $(OLDEST_VENV) with $(MONITOR_OLDEST_PYTHON)"
	rm -rf $(OLDEST_VENV)
	$(MONITOR_OLDEST_PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q -r $< 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	touch $@

unit-monitor-oldest: collection ## the monitor's unit tests on Python 3.9 (the oldest it supports)
	@if [ -z "$(MONITOR_OLDEST_PYTHON)" ]; then \
	  echo "unit-monitor-oldest: NOT RUN: no Python $(MONITOR_OLDEST) under $(PYENV_ROOT)/versions"; \
	else \
	  $(MAKE) $(OLDEST_VENV)/.stamp && \
	  $(OLDEST_VENV)/bin/python -m pytest -q -p no:cacheprovider --color=no tests/unit/monitor; \
	fi

sanity: venv ## ansible-test sanity on a copy in build/sanity (no Docker)
	rm -rf $(BUILD)/sanity
	mkdir -p $(SANITY_ROOT)
	{ git ls-files -z --cached --others --exclude-standard; } | \
	  { grep -zv -E '$(SANITY_EXCLUDE)' || true; } | \
	  while IFS= read -r -d '' f; do [ -e "$$f" ] && printf '%s\0' "$$f"; done | \
	  tar --null --no-recursion -T - -cf - | tar -xf - -C $(SANITY_ROOT)
	cd $(SANITY_ROOT) && git init -q && git add -A && \
	  git -c user.name=sanity -c user.email=sanity@localhost commit -q -m sanity
	mkdir -p $(SANITY_HOME)/.ansible/test/cache
	pip_version=$$(sed -n "s/^ *pip='\([0-9.]*\)',.*/\1/p" $(ANSIBLE_TEST_REQS) | head -1); \
	  cp tests/sanity/get-pip-offline.py $(SANITY_HOME)/.ansible/test/cache/get_pip_$${pip_version//./_}.py
	cd $(SANITY_ROOT) && \
	  HOME=$(SANITY_HOME) PATH="$(BIN):$(SANITY_PYENV_PATH)$$PATH" \
	  $(BIN)/ansible-test sanity --venv --requirements $(SANITY_PYTHON) \
	    --color no --truncate 0 $(SANITY_SKIP) \
	    $$(command -v shellcheck >/dev/null || echo --skip-test shellcheck)

# Coverage data of every test run lands in build/coverage/.coverage.<run>;
# `make coverage` combines them (unit tests on the host, engine tests in the
# kernel) and applies the floor.
COVERAGE_DIR := $(BUILD)/coverage
COVERAGE_COMBINED := $(BUILD)/coverage-combined.db
COV_SOURCES := --cov=plugins/module_utils $(if $(wildcard monitor),--cov=monitor) --cov-branch

unit: venv collection ## pytest tests/unit with coverage
	mkdir -p $(COVERAGE_DIR); rm -f $(COVERAGE_DIR)/.coverage.unit
	COVERAGE_FILE=$(COVERAGE_DIR)/.coverage.unit PYTHONPATH=$(COLLECTIONS) $(BIN)/pytest tests/unit tests/docgen tests/tooling \
	  $(COV_SOURCES) --cov-report=
	$(MAKE) unit-monitor-oldest

coverage: venv ## combine unit and kernel coverage; COV_MIN floor on engine and monitor
	rm -f $(COVERAGE_COMBINED)
	$(BIN)/coverage combine --keep --rcfile=$(ROOT)/pyproject.toml --data-file=$(COVERAGE_COMBINED) \
	  $(COVERAGE_DIR)/.coverage.* >/dev/null
	$(BIN)/coverage report --data-file=$(COVERAGE_COMBINED) --skip-covered
	@echo "coverage floor $(COV_MIN)% on the engine ($(COV_ENGINE)) and on the monitor:"
	$(BIN)/coverage report --data-file=$(COVERAGE_COMBINED) --include='$(COV_ENGINE)' \
	  --fail-under=$(COV_MIN) | grep -E '^(TOTAL|Coverage failure)'
	@if [ -d monitor ]; then $(BIN)/coverage report --data-file=$(COVERAGE_COMBINED) \
	  --include='monitor/*' --fail-under=$(COV_MIN) | grep -E '^(TOTAL|Coverage failure)'; fi

kernel-selftest: venv ## pytest tests/kernel -m "not qemu" (the kernel runner's own tests)
	@if compgen -G 'tests/kernel/test_*.py' >/dev/null; then \
	  $(BIN)/pytest -p no:cacheprovider tests/kernel -m "not qemu"; \
	else echo "kernel-selftest: no tests in tests/kernel yet: skipped"; fi

# The engine against a real IPVS table: pytest inside one kernel.
kernel-engine: venv collection ## pytest tests/kernel_engine inside tests/kernel/run
	@if compgen -G 'tests/kernel_engine/test_*.py' >/dev/null; then \
	  rm -f $(COVERAGE_DIR)/.coverage.kernel-engine; \
	  tests/kernel/run --export $(COVERAGE_DIR) -- env COVERAGE_FILE=/dev/null bash -c \
	    'COVERAGE_FILE=$$HAECS_KERNEL_EXPORT/.coverage.kernel-engine exec $(BIN)/pytest -p no:cacheprovider \
	     --color=no $(COV_SOURCES) --cov-report= tests/kernel_engine'; \
	else echo "kernel-engine: no tests in tests/kernel_engine yet: skipped"; fi

integration: venv collection ## tests/integration/run (all targets in one kernel)
	tests/integration/run

# The lab: a client, a director pair and three real servers in namespaces of
# the test kernel, deployed by playbooks/site.yml from lab/inventory.yml.
lab: venv collection ## deploy the lab cluster with site.yml and show it balancing (lab/run)
	lab/run

lab-test: venv collection ## the lab, plus check mode, idempotence and a refused bad model (lab/run --test)
	lab/run --test

lab-shell: venv collection ## deploy the lab, then a shell beside it: lab HOST COMMAND (lab/run --shell)
	lab/run --shell

lab-failover: venv collection ## the lab, then the VRRP master crashes under load: takeover time, lost requests (lab/run --failover)
	lab/run --failover

# Molecule's scenario extensions/molecule/default on the lab's cluster, in one
# kernel boot: prepare (lab/topology.yml), check, converge (haecs.lvs.site),
# idempotence, verify (lab/proof.yml).  Offline.  Molecule keeps its state in
# ANSIBLE_HOME (build/molecule), fresh for each run.
.PHONY: molecule
molecule: venv collection ## molecule test on the lab's cluster (extensions/molecule/README.md)
	rm -rf $(BUILD)/molecule
	ANSIBLE_HOME=$(BUILD)/molecule PATH="$(BIN):$$PATH" tests/kernel/with-agent -- molecule test </dev/null 2>&1 | cat

# The collection as a user gets it: ansible-galaxy collection build, the
# tarball's file list checked (build_ignore), install --offline into an
# empty collections path, and tests/packaging/installed.yml run from that
# installed copy in one kernel boot (module_defaults for group/haecs.lvs.ipvs).
collection-install: venv ## build the tarball, check its files, install it, run a playbook from the installed copy
	tests/packaging/run

# Targets tagged haecs/host_netns need no IPVS, only network namespaces of
# this host: their runme.sh runs natively, as root (fwmark: UML lacks inet
# nf_tables; connection_netns: the haecs.lvs.netns connection plugin).
HOST_NETNS_TARGETS := $(sort $(patsubst tests/integration/targets/%/aliases,%,$(shell grep -l '^haecs/host_netns' tests/integration/targets/*/aliases 2>/dev/null)))

integration-host: venv collection ## integration targets tagged haecs/host_netns, natively in a network namespace
	@rc=0; for t in $(HOST_NETNS_TARGETS); do \
	  start=$$(date +%s); \
	  if (cd tests/integration/targets/$$t && bash runme.sh) > $(BUILD)/integration-host-$$t.log 2>&1; \
	  then echo "PASS $$t (host netns, $$(( $$(date +%s) - start )) s)"; \
	  else rc=1; cat $(BUILD)/integration-host-$$t.log; echo "FAIL $$t (host netns)"; fi; \
	done; exit $$rc

monitor-kernel: venv collection ## the monitor's scenarios (tests/monitor_kernel) inside tests/kernel/run
	rm -f $(COVERAGE_DIR)/.coverage.monitor-kernel
	tests/kernel/run --export $(COVERAGE_DIR) -- env COVERAGE_FILE=/dev/null bash -c \
	  'COVERAGE_FILE=$$HAECS_KERNEL_EXPORT/.coverage.monitor-kernel exec $(BIN)/pytest -p no:cacheprovider \
	   --color=no $(COV_SOURCES) --cov-report= tests/monitor_kernel'

# Benchmarks print ratios against the reference tools measured in the same
# kernel boot (not part of make test; about 15 minutes in all).
BENCH_SIZES ?= 1000x10,10000x10

bench: deps ## engine vs ipvsadm, monitor vs keepalived (each in one kernel boot)
	mkdir -p $(BUILD)/bench
	tests/kernel/run --mem 3G --export $(BUILD)/bench -- bash -c \
	  'bench/python bench/ipvs_bench.py --sizes $(BENCH_SIZES) --json "$$HAECS_KERNEL_EXPORT/ipvs.json"'
	bench/run-monitor-bench --json $(BUILD)/bench/monitor.json

# The README's commands from a clean clone of HEAD on a copy-on-write view of
# this machine without what a new machine lacks (Debian packages beyond the
# image's, /lib/modules, /usr/lib/uml, caches, venv): tests/fresh-machine/README.md.
# Not part of make test (it installs the kernel's packages again: 3-8 min);
# FRESH_ARGS=--full adds the README's make test (30-60 min more).
FRESH_ARGS ?=

fresh-check: ## the README's commands on a simulated new machine (clean clone of HEAD); FRESH_ARGS=--full
	tests/fresh-machine/run $(FRESH_ARGS)

# The QEMU kernel (Debian's, with inet nf_tables and IPVS) proves fwmark
# rules with real traffic; slow (TCG emulation) but the only such proof.
qemu: venv collection ## fwmark traffic proof in the QEMU kernel (installs qemu and a Debian kernel)
	tests/kernel/install-deps --qemu
	tests/kernel/run --backend qemu --timeout 2400 -- tests/qemu/fwmark_traffic.sh

changelog-lint: venv ## antsibull-changelog lint
	$(BIN)/antsibull-changelog lint

# ansible-doc renders each module's DOCUMENTATION/EXAMPLES/RETURN into
# build/docs/modules/<name>.txt (generated, not tracked); any warning or
# error on stderr fails the target.  Then antsibull-docs lint-collection-docs
# --plugin-docs validates the schema and the O()/RV()/M() markup of every
# plugin and rstchecks the RST it would generate (offline, about 15 s).
# The service and real-server options are written once, in tests/docgen; a
# unit test fails when plugins/doc_fragments/ipvs_options.py is out of date.
fragments: venv ## write plugins/doc_fragments/ipvs_options.py from tests/docgen/ipvs_options.py
	$(BIN)/python tests/docgen/ipvs_options.py > plugins/doc_fragments/ipvs_options.py

docs: venv collection ## render modules, filters, connections and roles with ansible-doc into build/docs, lint them with antsibull-docs
	@if [ -z "$(MODULES)" ]; then echo "docs: no modules in plugins/modules yet: skipped"; exit 0; fi; \
	rm -rf $(DOCS_OUT); mkdir -p $(DOCS_OUT); rc=0; \
	for p in $(MODULES:%=module:%) $(FILTERS:%=filter:%) $(CONNECTIONS:%=connection:%) $(ROLES:%=role:%); do \
	  t=$${p%%:*}; n=$${p#*:}; \
	  if $(BIN)/ansible-doc -t $$t haecs.lvs.$$n >$(DOCS_OUT)/$$t-$$n.txt 2>$(DOCS_OUT)/$$n.err \
	     && [ ! -s $(DOCS_OUT)/$$n.err ] && [ -s $(DOCS_OUT)/$$t-$$n.txt ]; then \
	    echo "docs: $$t haecs.lvs.$$n ok"; \
	  else \
	    echo "docs: $$t haecs.lvs.$$n FAILED:"; cat $(DOCS_OUT)/$$n.err; rc=1; \
	  fi; \
	  rm -f $(DOCS_OUT)/$$n.err; \
	done; \
	echo "antsibull-docs lint-collection-docs --plugin-docs"; \
	PATH="$(BIN):$$PATH" $(BIN)/antsibull-docs lint-collection-docs --plugin-docs \
	  build/collections/ansible_collections/haecs/lvs 2>&1 | $(UNLINK_PATHS) || rc=1; \
	[ $$rc -eq 0 ] || echo "docs: FAILED (see above)"; \
	exit $$rc

# Fails when plugins/ roles/ playbooks/ or monitor/ changed since BASE
# without a new changelog fragment.  BASE defaults to origin/main, else HEAD~1.
fragment-check: ## changelog fragment present for code changes since BASE
	tests/check-fragment $(BASE)

# ---------------------------------------------------------------- all

# The lab-test stage is the longest (25-27 minutes on 2 cores); everything
# that need not come before it runs beside it, in the other lane.
test: ## every gate in order: deps lint sanity+kernel-selftest changelog-lint fragment-check docs (unit, kernel-engine)+monitor-kernel coverage (integration, collection-install, integration-host, qemu)+lab-test (a+b: at the same time)
	@start=$$(date +%s); \
	$(STAGE) deps $(MAKE) deps && \
	$(STAGE) lint $(MAKE) lint && \
	$(TOGETHER) sanity $(MAKE) sanity -- kernel-selftest $(MAKE) kernel-selftest && \
	$(STAGE) changelog-lint $(MAKE) changelog-lint && \
	$(STAGE) fragment-check tests/check-fragment --if-base && \
	$(STAGE) docs $(MAKE) docs && \
	$(TOGETHER) unit+kernel-engine bash -c '$(STAGE) unit $(MAKE) unit && \
	  $(STAGE) kernel-engine $(MAKE) kernel-engine' -- monitor-kernel $(MAKE) monitor-kernel && \
	$(STAGE) coverage $(MAKE) coverage && \
	$(TOGETHER) integration+packaging+qemu bash -c '$(STAGE) integration $(MAKE) integration && \
	  $(STAGE) collection-install $(MAKE) collection-install && \
	  $(STAGE) integration-host $(MAKE) integration-host && \
	  $(STAGE) qemu $(MAKE) qemu' -- lab-test $(MAKE) lab-test && \
	echo "== make test: all stages ok in $$(( $$(date +%s) - start )) s"

clean: ## remove build/ and caches (keeps .venv)
	rm -rf $(BUILD) .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage .coverage.* tests/output
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +

distclean: clean ## also remove .venv
	rm -rf $(VENV)
