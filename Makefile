# The two commands: `make run` installs and runs the whole stack; `make test` passes the tests.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean indextts-venv bench

$(STAMP): pyproject.toml tools/constraints-dev.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c tools/constraints-dev.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The real IndexTTS2 code (PyPI's tts-webui-index-tts 2.0.1) for tests/test_real_indextts.py:
# its own venv, on upstream's own pins (tools/constraints-indextts.txt, from its uv.lock), CPU
# torch, no weights (the tests build tiny random ones).
IVENV ?= .venv-indextts
ISTAMP := $(IVENV)/.installed
ICONS := -c tools/constraints-indextts.txt

$(ISTAMP): pyproject.toml tools/requirements-indextts.txt tools/requirements-indextts-nodeps.txt tools/constraints-indextts.txt
	test -x $(IVENV)/bin/python || $(PY) -m venv $(IVENV)
	$(IVENV)/bin/python -m pip install --quiet --upgrade pip
	$(IVENV)/bin/python -m pip install --quiet $(ICONS) -r tools/requirements-indextts.txt -e .
	$(IVENV)/bin/python -m pip install --quiet --no-deps $(ICONS) -r tools/requirements-indextts-nodeps.txt
	rm -f $(IVENV)/lib/python3.11/site-packages/torchaudio/lib/*.so
	$(IVENV)/bin/python -c "import torchaudio.compliance.kaldi, indextts.infer_v2"
	touch $(ISTAMP)

indextts-venv: $(ISTAMP)

run: $(STAMP)
	$(BIN)/ttsq up

# Two processes, a test file each at a time (most of a stack test is waiting for a process or
# a heartbeat); then, alone, the few tests that bound a wall-clock time. Both runs always run.
test: $(STAMP) $(ISTAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not serial"; parallel=$$?; \
	$(BIN)/python -m pytest -q -m serial; serial=$$?; \
	exit $$((parallel || serial))

# Timed, so not part of `test`: appends its figures to bench/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python -m bench.run_all

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy api common gpu_worker io_worker ttsq

clean:
	rm -rf $(VENV) $(IVENV) var .pytest_cache
