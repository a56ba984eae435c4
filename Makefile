# One command installs everything and runs the main job (`make demo`),
# one installs everything and runs the tests (`make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fgmm-installed

.PHONY: install demo test smoke lint bench-cub clean

$(STAMP): pyproject.toml setup.py requirements/torch.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/torch.txt
	$(BIN)/python -m pip install -q -c requirements/torch.txt -e ".[dev,faiss,cleanlab]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fgmm demo

test: $(STAMP)
	$(BIN)/ruff check fgmm tests benchmarks examples
	$(BIN)/python -m pytest -q

# build the wheel, install it in a fresh venv outside the checkout, use it there (CI runs this too)
smoke:
	PYTHON=$(PYTHON) .ci/smoke_wheel.sh

lint: $(STAMP)
	$(BIN)/ruff check fgmm tests benchmarks examples

bench-cub: $(STAMP)
	$(BIN)/python benchmarks/cub.py --root ../shared/data/cub200 --out benchmarks/results/cub.json --cache .fgmm-cache

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
