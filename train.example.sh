#!/usr/bin/env bash
# A real launch of train.py: continual pre-training of an expanded model on a prepared dataset.
#
#   one node, 8 GPUs:          bash train.example.sh
#   several nodes:             HOSTFILE=hostfile bash train.example.sh
#     hostfile (see hostfile.example): one hostname or IP per line, nothing else (colossalai run does not
#     skip comments); password-less ssh to each, this repo and .venv at the same path, SAVE_DIR on a
#     filesystem all nodes share; the first is master.
#   CPU smoke run (2 procs):   PLUGIN=ddp NPROC=2 PRECISION=fp32 MAX_STEPS=8 bash train.example.sh
#
# colossal_lang.training.launch_nodes runs `colossalai run` (which starts torchrun on every host, over ssh
# for a hostfile) with only the environment variables a run needs (README, "Multi-node training": an
# HF_TOKEN in this shell stays here), checks that every host answers over ssh first, and names the rank
# that failed first. FORWARD="WANDB_API_KEY OTHER" passes more variables (their values are then on the
# nodes' command lines). torchrun must be on PATH, hence the venv's bin first.
# `torchrun --nproc_per_node 8 train.py ...` works just as well on one node.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PWD/.venv/bin:$PATH"

PRETRAINED=${PRETRAINED:-outputs/model-expanded}       # init_model.py output (HF folder + tokenizer)
DATASET=${DATASET:-outputs/pretrain-data}               # prepare_pretrain_dataset.py --data_output_dir
SAVE_DIR=${SAVE_DIR:-outputs/checkpoints}
PLUGIN=${PLUGIN:-gemini}                                 # ddp | gemini | gemini_auto | zero2 | zero2_cpu | 3d
NPROC=${NPROC:-8}
PRECISION=${PRECISION:-bf16}
MAX_STEPS=${MAX_STEPS:-0}                                # 0: --num_epochs decides
MASTER_PORT=${MASTER_PORT:-29500}

LAUNCH=(python -m colossal_lang.training.launch_nodes --nproc_per_node "$NPROC" --master_port "$MASTER_PORT")
if [[ -n "${HOSTFILE:-}" ]]; then
    LAUNCH+=(--hostfile "$HOSTFILE")
fi
for name in ${FORWARD:-}; do
    LAUNCH+=(--forward "$name")
done

EXTRA=()
if [[ "$PLUGIN" != "ddp" ]]; then
    EXTRA+=(--use_grad_checkpoint)
fi
if [[ "$PRECISION" != "fp32" ]] && python -c "import flash_attn" 2>/dev/null; then  # no fp32 flash kernels
    EXTRA+=(--use_flash_attn)
fi

"${LAUNCH[@]}" train.py \
    --pretrained "$PRETRAINED" \
    --dataset "$DATASET" \
    --plugin "$PLUGIN" \
    --mixed_precision "$PRECISION" \
    --save_dir "$SAVE_DIR" \
    --save_interval 1000 \
    --keep_last 3 \
    --load_checkpoint latest \
    --tensorboard_dir "$SAVE_DIR/tensorboard" \
    --config_file "$SAVE_DIR/config.json" \
    --num_epochs 1 \
    --max_steps "$MAX_STEPS" \
    --batch_size 4 \
    --accumulation_steps 8 \
    --lr 1e-4 \
    --lr_schedule cosine \
    --min_lr_ratio 0.1 \
    --warmup_steps 100 \
    --weight_decay 0.01 \
    --grad_clip 1.0 \
    "${EXTRA[@]}" \
    "$@"
