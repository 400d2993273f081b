# fcbuild: `make demo` runs the main job end to end, `make test` runs every test.
# Each target works on a fresh clone: the virtualenv is made from the pinned requirements.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
PORT ?= 9000

.PHONY: run demo serve-demo test lint format clean

$(STAMP): requirements.txt requirements-dev.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-cache-dir -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -c "import crcmod._crcfunext" || { echo "crcmod was installed without its C extension: install gcc and python3-dev, then make clean"; exit 1; }
	touch $@

run: $(STAMP)
	$(BIN)/python fc_runtime.py $(PORT)

demo: $(STAMP)
	$(BIN)/python demo/run_demo.py

serve-demo: $(STAMP)
	$(BIN)/python oss_server.py --root demo/.state/oss --port 9100 \
		--access-key-id STS.demo-key-id --access-key-secret demo-secret --security-token demo-security-token

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache demo/.state
