# Two commands on a fresh machine (see README):
#   make demo   - set up, load the default rulebook, score examples/pairs.jsonl with the embedded judge
#   make test   - set up (Chromium too, for the browser test), run ruff, mypy --strict on judge/ and all tests
# Each creates .venv and installs what it needs. torch is pinned to the CPU wheel first, otherwise
# sentence-transformers pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: demo test setup setup-dev setup-local browser clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	touch $@

$(VENV)/.dev: $(VENV)/.created pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $@

$(VENV)/.local: $(VENV)/.dev
	$(PIP) install -q -c constraints.txt -e '.[dev,local]'
	touch $@

setup-dev: $(VENV)/.dev browser
setup-local: $(VENV)/.local

# The results viewer's browser test needs Chromium and chromedriver: installed here when missing and possible
# (root or passwordless sudo, apt-get present); otherwise the reason is printed and the test is skipped.
browser:
	@bash scripts/install-browser.sh

test: setup-dev
	bash scripts/run-tests.sh $(PY)

demo: $(VENV)/.local
	bash scripts/demo.sh $(VENV)

clean:
	rm -rf $(VENV) .judge-data
