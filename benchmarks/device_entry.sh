#!/usr/bin/env bash
# The GPU check on a lent CUDA machine (see ../shared/device/README.md), from the repository root, with the
# folder built by benchmarks/device_carry.py carried as .device. The whole device command is
#     bash benchmarks/device_entry.sh [gpu_check.py flags]        carry [".device"], timeout_s 590
# It installs the carried wheels into /tmp/site (that machine has no network and no colossalai), puts the
# kernels where colossalai imports them from (colossalai/_C) or, if none were carried, builds them for sm_90 and
# returns them under $OUT/kernels for the next carry, then runs gpu_check.py with a random-weight SmolLM2 built
# from the carried config, under a time budget (BUDGET seconds in all, default 500). What comes back (at most 8
# files): entry.log (everything printed), gpu_check.md (the table), rows.jsonl, logs.tar.gz (every launch's log
# and step log), kernels/*.so.
set -uo pipefail
: "${OUT:?OUT must name the folder whose files come back}"
CARRY=${CARRY:-.device} SITE=${SITE:-/tmp/site} BUDGET=${BUDGET:-500} RUN=/tmp/gpu_check
exec > >(tee -a "$OUT/entry.log") 2>&1
echo "== $(date -u '+%F %T UTC') $(nvidia-smi -L 2>&1 | head -2 | tr '\n' ' ')"

python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$CARRY"/wheels/*.whl || exit 3
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# fused_optim_cuda includes cublas_v2.h, which only the pip nvidia package carries there
NVIDIA_INC=$(python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "include"))' 2>/dev/null)
export CPATH="${NVIDIA_INC}${CPATH:+:$CPATH}"

mkdir -p "$SITE/colossalai/_C" "$OUT/kernels"
if compgen -G "$CARRY/kernels/*.so" >/dev/null; then
  cp "$CARRY"/kernels/*.so "$SITE/colossalai/_C/"
else
  echo "== no carried kernels: building cpu_adam_x86 and fused_optim_cuda for sm_90"
  GENCODE=90 python3 "$CARRY/build/build_kernels.py" cpu_adam fused_optim 2>&1 | tee /tmp/kernels.log
  for so in $(sed -n 's/^BUILD .*: OK in .* -> //p' /tmp/kernels.log); do
    cp "$so" "$SITE/colossalai/_C/" && cp "$so" "$OUT/kernels/"
  done
fi
python3 - <<'PY' || exit 4
import torch, transformers, colossalai, datasets
print("== stack: torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__,
      "colossalai", colossalai.__version__, "datasets", datasets.__version__)
from colossalai.kernel.kernel_loader import CPUAdamLoader, FusedOptimizerLoader
print("== kernels:", CPUAdamLoader().load().__file__, FusedOptimizerLoader().load().__file__)
PY

LEFT=$((BUDGET - SECONDS))
echo "== gpu_check with ${LEFT} s left"
# gpu_check stops starting launches at its budget; `timeout` is the backstop (SIGTERM ends the running launch's tree)
timeout -k 30 $((LEFT + 60)) python3 benchmarks/gpu_check.py --out "$RUN" --smollm2_config "$CARRY/smollm2" \
  --budget_s "$LEFT" "$@"
rc=$?
cp "$RUN/table.md" "$OUT/gpu_check.md" 2>/dev/null
cp "$RUN/rows.jsonl" "$OUT/rows.jsonl" 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$RUN" logs 2>/dev/null
echo "== gpu_check exit $rc, ${SECONDS} s in all"
exit $rc
