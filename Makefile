# One command per check, the same locally and in CI.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser demo test test-unit test-integration lint bench docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/flywheel up
	@# A served model holds a CPU that the two training workers need on a 2-core machine.
	@$(BIN)/flywheel undeploy digits-mlp >/dev/null 2>&1 || true
	@# The vision team's own token: the experiment is queued and admitted as that team's.
	FLYWHEEL_TOKEN=$$($(BIN)/flywheel token create vision) \
		$(BIN)/flywheel submit experiments/digits/train.yaml --follow
	$(BIN)/flywheel deploy digits-mlp
	$(BIN)/python experiments/digits/show.py

# The status page tests drive Debian's headless Chromium; installed from Debian when missing.
browser:
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium for the status page tests (apt-get, needs root)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: lint browser
	$(BIN)/pytest

test-unit: setup browser
	$(BIN)/pytest tests/unit

test-integration: setup
	$(BIN)/pytest tests/integration

lint: setup
	$(BIN)/ruff check platform tests benchmarks experiments
	$(BIN)/ruff format --check platform tests benchmarks experiments
	$(BIN)/mypy platform/flywheel
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python -m benchmarks

docs: setup
	$(BIN)/flywheel schema --markdown > docs/spec-reference.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
