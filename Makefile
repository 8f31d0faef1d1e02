# Builds .venv itself; `make quickstart` runs the embedded default study, `make test` the tests.
PY ?= python3
# Where pip finds torch's CPU wheel: this project's machines have it in pip's local wheel folder (leave empty);
# elsewhere `make quickstart TORCH_INDEX=https://download.pytorch.org/whl/cpu` (PyPI's Linux wheel is the CUDA one).
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv quickstart test bench clean

$(BIN)/nas: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -c constraints.txt -e '.[test,ray,dashboard]'
	touch $(BIN)/nas

venv: $(BIN)/nas

# The peer tools (Syne Tune) are for benchmarks/peers.py and its tests only: `make test` adds them, the quickstart not.
$(VENV)/.peers: $(BIN)/nas
	$(BIN)/pip install -q -c constraints.txt -e '.[peers]'
	touch $(VENV)/.peers

quickstart: venv
	$(BIN)/nas run studies/quickstart.yaml && $(BIN)/nas report studies/quickstart.yaml

test: venv $(VENV)/.peers
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs reports/quickstart
