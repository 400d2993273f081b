# fcbuild: `make demo` runs the main job end to end, `make test` runs every test.
# Each target works on a fresh clone: the virtualenv is made from the pinned requirements.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
PORT ?= 9000

.PHONY: run demo serve-demo test test-source test-binary bootstrap dist figures lint format clean

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

# The demo's site at http://127.0.0.1:9100/, as its domain would serve it (a single-page app: missing paths get index.html).
serve-demo: $(STAMP)
	$(BIN)/python -m localoss --root demo/.state/oss --port 9100 --website site/demo \
		--error-document index.html --error-status 200 \
		--access-key-id STS.demo-key-id --access-key-secret demo-secret --security-token demo-security-token

# Everything: the source, then the frozen binary through the same end-to-end suites.
test: test-source test-binary

test-source: $(STAMP)
	$(BIN)/python -m pytest -q tests

# The end-to-end suites against dist/bootstrap, plus its own checks (static, empty root; needs root).
test-binary: $(STAMP) dist/bootstrap
	FC_RUNTIME_BIN=dist/bootstrap $(BIN)/python -m pytest -q tests/frozen \
		tests/test_e2e_runtime.py tests/test_e2e_build.py tests/test_e2e_releases.py tests/test_e2e_cache.py \
		tests/test_e2e_cdn.py tests/test_e2e_corepack.py tests/test_e2e_vite.py tests/test_e2e_isolation.py tests/test_e2e_outcomes.py tests/test_e2e_workspaces.py tests/test_e2e_frameworks.py tests/test_e2e_triggers.py tests/test_e2e_git.py tests/test_e2e_projects.py tests/test_e2e_hooks.py tests/test_cli.py \
		tests/test_fuzz_invoke.py

bootstrap: dist/bootstrap

dist/bootstrap: build.sh requirements.txt requirements-build.txt $(wildcard *.py)
	./build.sh

# The code package for FC: bootstrap at the root of the zip, executable.
dist: dist/fcbuild.zip

dist/fcbuild.zip: dist/bootstrap $(STAMP)
	$(BIN)/python -c "import zipfile; z = zipfile.ZipFile('$@', 'w', zipfile.ZIP_DEFLATED); \
		i = zipfile.ZipInfo.from_file('dist/bootstrap', 'bootstrap'); i.external_attr = 0o100755 << 16; \
		i.compress_type = zipfile.ZIP_DEFLATED; z.writestr(i, open('dist/bootstrap', 'rb').read()); z.close()"
	@echo "wrote $@ ($$(du -h $@ | cut -f1)): upload it to FC, or run s deploy (see the README)"

# The README's headline figures, side by side from one run (several minutes; the npm registry for the builds).
figures: $(STAMP) dist/bootstrap
	$(BIN)/python bench/figures.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .venv-build build dist .pytest_cache .ruff_cache demo/.state "$${TMPDIR:-/tmp}"/fcbuild-demo-*
