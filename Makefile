PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test docs test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cnnviz activations sample_images -o cnnviz-out/activations
	$(BIN)/cnnviz cam sample_images --top-k 2 --method gradcam,gradcam++,layercam,faster-scorecam --metrics -o cnnviz-out/cam
	$(BIN)/cnnviz filters -l block1_conv1 -o cnnviz-out/filters
	$(BIN)/cnnviz maximize -l block3_conv2 --filter 0-7 --size 96 -o cnnviz-out/maximize
	$(BIN)/cnnviz dream sample_images/chelsea.jpg sample_images/star_and_ring.png -l block3_conv2 --blend 0.7 -o cnnviz-out/dream
	$(BIN)/cnnviz reconstruct sample_images/star.png sample_images/star_and_ring.png --method inversion -o cnnviz-out/reconstruct
	@echo "Pictures are in cnnviz-out/: open cnnviz-out/<command>/index.html in a browser."

# two workers: the machines have two cores and most of a test's time is one core tracing graphs
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=20

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not system and not slow"

lint: $(STAMP)
	$(BIN)/ruff check cnnviz_cli tests
	$(BIN)/lint-imports --no-logo

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]' || echo "tf-keras-vis not installable: comparisons skipped"
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf cnnviz-out build site *.egg-info
