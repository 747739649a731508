#!/usr/bin/env bash
# The main job on the embedded default: adapt SmolLM2-135M-Instruct to Czech, end to end, through the
# same commands a user would type. `make demo` runs it after setting up .venv.
#
# On CPU (default) it is a smoke run that still shows the loss falling. The same script is a real run
# on GPUs through these variables:
#   DEVICE=cuda NPROC=8 PLUGIN=zero2 MIXED_PRECISION=bf16 STEPS=2000 BATCH_SIZE=16 MAX_LENGTH=2048 make demo
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 PYTHONWARNINGS=ignore

OUT=${OUT:-outputs/demo}
DEVICE=${DEVICE:-cpu}
NPROC=${NPROC:-2}
PLUGIN=${PLUGIN:-ddp}
MIXED_PRECISION=${MIXED_PRECISION:-fp32}
STEPS=${STEPS:-30}
BATCH_SIZE=${BATCH_SIZE:-2}
ACCUMULATION_STEPS=${ACCUMULATION_STEPS:-1}
MAX_LENGTH=${MAX_LENGTH:-256}
LR=${LR:-5e-4}
VOCAB_SIZE=${VOCAB_SIZE:-16000}
EVAL_DOCS=${EVAL_DOCS:-20}
EVAL_CHARS=${EVAL_CHARS:-1000}
EVAL_QUESTIONS=${EVAL_QUESTIONS:-50}
MASTER_PORT=${MASTER_PORT:-29517}

BASE=.cache/models/SmolLM2-135M-Instruct
CZECH_HELDOUT="data/heldout/cs_libreoffice_help.jsonl data/heldout/cs_fortunes.jsonl"
ENGLISH_HELDOUT="data/heldout/en_libreoffice_help.jsonl data/heldout/en_state_of_the_union.jsonl"
mkdir -p "$OUT"
step() { printf '\n=== %s\n' "$*"; }
START=$(date +%s)

step "0. Import the embedded base model (SmolLM2-135M-Instruct, GGUF -> Hugging Face folder, once)"
python -m colossal_lang.model.import_smollm2 --output_dir "$BASE"

step "1. Train a Czech tokenizer and expand SmolLM2's tokenizer with it (English tokenization protected)"
python -m colossal_lang.tokenizer.train_tokenizer --data_input_dirs data/pretrain/cs \
    --model_type byte_level_bpe --base_tokenizer_dir "$BASE" --vocab_size "$VOCAB_SIZE" \
    --output_dir "$OUT/tokenizer_cs"
python -m colossal_lang.tokenizer.init_tokenizer --source_tokenizer_dir "$BASE" \
    --target_tokenizer_dir "$OUT/tokenizer_expanded" --expand_from_tokenizer "$OUT/tokenizer_cs" \
    --reference_text data/pretrain/en

step "2. Initialise the expanded model (new rows: mean of each new token's pieces under the old tokenizer)"
python -m colossal_lang.model.init_model --source_model_and_tokenizer_path "$BASE" \
    --target_tokenizer_path "$OUT/tokenizer_expanded" --target_model_path "$OUT/model_init" \
    --init mean_of_pieces

step "3. Prepare pretraining data: Czech target text plus English replay (cs=0.75, en=0.25 of tokens)"
python prepare_pretrain_dataset.py --data_input_dirs data/pretrain/cs,data/pretrain/en \
    --tokenizer_dir "$OUT/model_init" --data_output_dirs "$OUT/data" --max_length "$MAX_LENGTH" \
    --category_weights cs=0.75,en=0.25 --num_proc 2 --overwrite

step "4. Train with colossalai run, plugin $PLUGIN, $NPROC processes on $DEVICE, $STEPS steps"
rm -rf "$OUT/checkpoints" "$OUT/tensorboard"
colossalai run --nproc_per_node "$NPROC" --master_port "$MASTER_PORT" train.py \
    --pretrained "$OUT/model_init" --dataset "$OUT/data" --plugin "$PLUGIN" \
    --mixed_precision "$MIXED_PRECISION" --max_steps "$STEPS" --batch_size "$BATCH_SIZE" \
    --accumulation_steps "$ACCUMULATION_STEPS" --lr "$LR" --warmup_steps 3 --save_interval "$STEPS" \
    --save_dir "$OUT/checkpoints" --tensorboard_dir "$OUT/tensorboard" --loss_log "$OUT/loss.jsonl" \
    --config_file "$OUT/train_config.json"
rm -rf "$OUT/model_adapted"
cp -r "$OUT/checkpoints/final" "$OUT/model_adapted"

step "5. Evaluate base vs initialised vs adapted on held-out Czech and English"
python -m colossal_lang.evaluation.compare --model base="$BASE" --model initialised="$OUT/model_init" \
    --model adapted="$OUT/model_adapted" --data $CZECH_HELDOUT $ENGLISH_HELDOUT \
    --max_documents "$EVAL_DOCS" --max_characters "$EVAL_CHARS" --max_length "$MAX_LENGTH" \
    --mc data/eval/cs_translate_mc.jsonl --max_questions "$EVAL_QUESTIONS" --tensorboard_dir "$OUT/tensorboard" \
    --loss_log "$OUT/loss.jsonl" --output_dir "$OUT/report"

step "6. Generate a Czech continuation with the adapted model"
echo "Praha je hlavní město" > "$OUT/prompt.txt"
python inference_example.py --model_path "$OUT/model_adapted" --device "$DEVICE" --max_new_tokens 30 \
    --do_sample false --input_txt "$OUT/prompt.txt"

step "Done in $(( $(date +%s) - START )) s"
python - "$OUT/loss.jsonl" <<'PY'
import json, sys
steps = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
def mean(rows, key):
    values = [row[key] for row in rows if key in row]
    return sum(values) / len(values) if values else float("nan")
head, tail = steps[:5], steps[-5:]
print(f"training loss over {len(steps)} steps (mean of the first 5 -> last 5 steps):")
for key in ("loss", "loss/cs", "loss/en"):
    print(f"  {key:8s} {mean(head, key):.3f} -> {mean(tail, key):.3f}")
PY
cat "$OUT/report/report.md"
echo
echo "Adapted model (Hugging Face folder): $OUT/model_adapted"
