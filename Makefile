# dlms-kms: build, lint and test.
#
#   make deps    install what is missing (Debian packages as root, then .venv)
#   make lint    ruff + mypy --strict
#   make test    deps, lint, the whole suite on SQLite, then again on PostgreSQL
#   make wheel-check  build the wheel, install it in a fresh venv outside the checkout and run a
#                KMS from an empty directory on a throwaway token (scripts/wheel-check.sh)
#   make demo    deps, then scripts/demo.py
#   make clean   remove caches and CI markers (distclean also removes .venv)
#
# `make -n test` prints the exact commands. The Debian packages are checked when the recipe is
# expanded, so `make -n` shows the apt-get line only if something is missing.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
PGTEST := scripts/postgres-test.sh
CI_DIR := var/ci
PG_MARKER := $(CI_DIR)/postgresql-leg.passed
PG_COUNT := $(CI_DIR)/postgresql-tests.count
PYTEST := KMS_REQUIRE_HSM=1 $(strip $(VENV)/bin/python -m pytest $(PYTEST_ARGS))
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -y -q

# Debian package -> shell test that passes when what we need from it is present.
SYSTEM_PACKAGES := softhsm2 postgresql openssl python3-venv
have_softhsm2 := command -v softhsm2-util && test -e /usr/lib/softhsm/libsofthsm2.so
have_postgresql := command -v pg_ctlcluster && ls /usr/lib/postgresql/*/bin/postgres
have_openssl := command -v openssl
have_python3-venv := $(PYTHON) -c 'import ensurepip, venv'
missing_packages = $(strip $(foreach p,$(SYSTEM_PACKAGES),\
	$(if $(shell { $(have_$(p)); } >/dev/null 2>&1 && echo ok),,$(p))))

.PHONY: deps system-deps lint test reset-ci-markers test-sqlite test-postgresql wheel-check demo \
	clean distclean

deps: system-deps $(STAMP)

system-deps:
ifeq ($(shell id -u),0)
	$(if $(missing_packages),$(APT_GET) update && $(APT_GET) install $(missing_packages),@echo "system packages present: $(SYSTEM_PACKAGES)")
else
	$(if $(missing_packages),@echo "missing Debian packages: $(missing_packages); run 'make deps' as root" >&2; exit 1,@echo "system packages present: $(SYSTEM_PACKAGES)")
endif

$(VENV)/bin/python: | system-deps
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml or setup.py is newer than the stamp.
$(STAMP): pyproject.toml setup.py | $(VENV)/bin/python
	PIP_DISABLE_PIP_VERSION_CHECK=1 $(VENV)/bin/pip install -q -e '.[test]'
	touch $@

lint: deps
	$(VENV)/bin/ruff check kms tests benchmarks scripts schema setup.py
	$(VENV)/bin/mypy --strict kms benchmarks

# The PostgreSQL marker is written only when pytest passed and the conftest counted tests that
# used a PostgreSQL database; .ci/run checks both.
define sqlite-leg
KMS_TEST_DATABASE=sqlite $(PYTEST)
endef

define postgresql-leg
$(PGTEST) start
KMS_TEST_DATABASE=postgresql KMS_TEST_POSTGRES_URL="$$($(PGTEST) url)" $(PYTEST)
test "$$(cat $(PG_COUNT) 2>/dev/null || echo 0)" -gt 0 || { echo "no test used PostgreSQL" >&2; exit 1; }
echo "$$(cat $(PG_COUNT)) tests passed on PostgreSQL" > $(PG_MARKER)
endef

test: reset-ci-markers deps lint
	$(sqlite-leg)
	$(postgresql-leg)

reset-ci-markers:
	rm -f $(PG_MARKER) $(PG_COUNT)

# One leg alone, without lint.
test-sqlite: deps
	$(sqlite-leg)

test-postgresql: deps
	$(postgresql-leg)

# The wheel needs no .venv of ours and no PostgreSQL: only SoftHSM2 and venv.
wheel-check: SYSTEM_PACKAGES := softhsm2 python3-venv
wheel-check: system-deps
	PYTHON=$(PYTHON) scripts/wheel-check.sh

# The demo needs no PostgreSQL: only the packages it uses are checked (and installed).
demo: SYSTEM_PACKAGES := softhsm2 openssl python3-venv
demo: deps
	$(VENV)/bin/python scripts/demo.py

clean:
	rm -rf $(CI_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
	find kms tests benchmarks scripts schema -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
