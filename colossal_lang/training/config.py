"""Every flag of train.py, defined once, and the checks that need no model or device."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from colossal_lang.cli import parse_args_with_config, str2bool
from colossal_lang.errors import InputError

PLUGINS = ("ddp", "gemini", "gemini_auto", "zero2", "zero2_cpu", "3d")
PRECISIONS = ("fp32", "fp16", "bf16")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Continual pre-training / fine-tuning of a causal LM on Colossal-AI's Booster.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("model and data (Colossal-LLaMA flags)")
    g.add_argument("--pretrained", required=True, help="Hugging Face model folder (AutoModelForCausalLM)")
    g.add_argument("--tokenizer_dir", default=None, help="tokenizer folder (default: --pretrained)")
    g.add_argument("--dataset", nargs="+", required=True, help="prepared dataset folder(s) (manifest.json) or part folders")
    g.add_argument("--load_checkpoint", default=None,
                   help="'latest' (newest complete checkpoint in --save_dir), a checkpoint folder, or .../modeling (weights only)")
    g.add_argument("--save_interval", type=int, default=1000, help="save a checkpoint every N optimizer steps (0: only at the end)")
    g.add_argument("--save_dir", default="checkpoints", help="checkpoints and the final Hugging Face folder go here")
    g.add_argument("--tensorboard_dir", default=None, help="tensorboard event folder (default: none)")
    g.add_argument("--config_file", default=None, help="where to write the effective configuration (JSON)")
    g.add_argument("--keep_last", type=int, default=0, help="keep only the newest N checkpoints (0: keep all)")

    g = p.add_argument_group("parallelism")
    g.add_argument("--plugin", default="ddp", choices=PLUGINS)
    g.add_argument("--tp", type=int, default=1, help="tensor parallel size (3d)")
    g.add_argument("--pp", type=int, default=1, help="pipeline parallel size (3d)")
    g.add_argument("--sp", type=int, default=1, help="sequence parallel size (3d)")
    g.add_argument("--sp_mode", default="split_gather", choices=("split_gather", "ring", "all_to_all", "ring_attn"))
    g.add_argument("--zero_stage", type=int, default=0, choices=(0, 1, 2), help="ZeRO stage inside the 3d plugin")
    g.add_argument("--microbatch_size", type=int, default=1, help="pipeline micro-batch size (3d with --pp > 1)")

    g = p.add_argument_group("optimisation")
    g.add_argument("--num_epochs", type=int, default=1)
    g.add_argument("--max_steps", type=int, default=0,
                   help="length of the run in optimizer steps, cycling epochs as needed (0: --num_epochs decides)")
    g.add_argument("--stop_at_step", type=int, default=0,
                   help="end this launch after step N with a checkpoint, as if interrupted; the schedule still spans the whole run")
    g.add_argument("--batch_size", type=int, default=2, help="sequences per data-parallel rank per micro-batch")
    g.add_argument("--accumulation_steps", type=int, default=1, help="micro-batches per optimizer step")
    g.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    g.add_argument("--optimizer", default="adamw", choices=("adamw", "lionw"))
    g.add_argument("--betas", type=float, nargs=2, default=None, help="default: 0.9 0.95")
    g.add_argument("--eps", type=float, default=1e-8)
    g.add_argument("--weight_decay", type=float, default=0.1, help="not applied to norms, biases, frozen rows")
    g.add_argument("--lr_schedule", default="cosine", choices=("cosine", "wsd", "constant"))
    g.add_argument("--warmup_steps", type=int, default=None, help="linear warm-up steps (default: 2.5%% of the steps)")
    g.add_argument("--min_lr_ratio", type=float, default=0.1, help="final LR as a fraction of --lr")
    g.add_argument("--decay_ratio", type=float, default=0.2, help="wsd: fraction of the steps spent decaying")
    g.add_argument("--grad_clip", type=float, default=1.0, help="max global gradient norm (0: no clipping)")
    g.add_argument("--mixed_precision", default="bf16", choices=PRECISIONS)
    g.add_argument("--seed", type=int, default=42)

    g = p.add_argument_group("model features")
    g.add_argument("--use_grad_checkpoint", action="store_true", default=False)
    g.add_argument("--use_flash_attn", action="store_true", default=False,
                   help="flash_attention_2 (needs flash-attn and CUDA); SDPA otherwise")
    g.add_argument("--attention", default="auto", choices=("auto", "doc_causal", "causal"),
                   help="auto: what the dataset's manifest says it was packed for")
    g.add_argument("--use_neft", action="store_true", default=False, help="NEFTune noise on input embeddings")
    g.add_argument("--neft_alpha", type=float, default=5.0)
    g.add_argument("--freeze_non_embeds_params", action="store_true", default=False,
                   help="train only the input embeddings and the LM head")
    g.add_argument("--train_new_rows_only", action="store_true", default=False,
                   help="train only the embedding/head rows of new tokens (ids >= --new_token_start)")
    g.add_argument("--new_token_start", type=int, default=None,
                   help="first new token id (default: the reference model's vocabulary size)")

    g = p.add_argument_group("LoRA")
    g.add_argument("--lora_rank", type=int, default=0, help="> 0 trains LoRA adapters through booster.enable_lora")
    g.add_argument("--lora_alpha", type=float, default=32.0)
    g.add_argument("--lora_dropout", type=float, default=0.0)
    g.add_argument("--lora_target_modules", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    g.add_argument("--lora_train_embeddings", type=str2bool, default=None,
                   help="also train embeddings and head (default: yes when the vocabulary grew)")

    g = p.add_argument_group("KL to the original model (Vikhr)")
    g.add_argument("--kl_coef", type=float, default=0.0, help="weight of KL(reference || model) over the original vocabulary")
    g.add_argument("--reference_model", default=None, help="frozen original model (default: --pretrained)")
    g.add_argument("--kl_categories", nargs="*", default=None, help="categories (replay data) that get the KL term (default: all)")

    g = p.add_argument_group("loss-spike guard")
    g.add_argument("--spike_window", type=int, default=50, help="recent losses the median is taken over")
    g.add_argument("--spike_factor", type=float, default=3.0, help="a loss above factor x median is a spike (0: off)")
    g.add_argument("--spike_min_history", type=int, default=10, help="losses needed before spikes are judged")
    g.add_argument("--spike_rollback_after", type=int, default=3, help="spikes since the last checkpoint that trigger a rollback")
    g.add_argument("--spike_lr_factor", type=float, default=0.5, help="LR multiplier applied at each rollback")
    # Fault injection for tests (steps counted from 1, as logged): a NaN loss; a save failing like a full disk.
    g.add_argument("--inject_nan_at_step", type=int, default=None, help=argparse.SUPPRESS)
    g.add_argument("--inject_save_failure_at_step", type=int, default=None, help=argparse.SUPPRESS)
    g.add_argument("--inject_kill_during_save_at_step", type=int, default=None, help=argparse.SUPPRESS)

    g = p.add_argument_group("logging")
    g.add_argument("--log_interval", type=int, default=1, help="tensorboard/console every N steps")
    g.add_argument("--loss_log", default=None, help="append one JSON line per step (step, loss, lr, ...) to this file (rank 0)")
    g.add_argument("--log_samples", action="store_true", default=False,
                   help="add the dataset row indices of every step (all ranks) to --loss_log")
    g.add_argument("--progress", type=str2bool, default=True, help="progress bar on rank 0")
    g.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes")
    return p


def parse_train_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    args = parse_args_with_config(build_parser(), argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Reject what no plugin or device can honour; device-dependent checks live in plugins.check_plugin."""
    positive = {"batch_size": args.batch_size, "accumulation_steps": args.accumulation_steps, "num_epochs": args.num_epochs,
                "tp": args.tp, "pp": args.pp, "sp": args.sp, "microbatch_size": args.microbatch_size}
    for name, value in positive.items():
        if value < 1:
            raise InputError(f"--{name} must be at least 1 (got {value})")
    if args.lr <= 0:
        raise InputError("--lr must be positive")
    if not 0.0 <= args.min_lr_ratio <= 1.0:
        raise InputError("--min_lr_ratio must lie in [0, 1]")
    if min(args.max_steps, args.stop_at_step, args.save_interval, args.keep_last) < 0:
        raise InputError("--max_steps, --stop_at_step, --save_interval and --keep_last cannot be negative")
    if args.plugin != "3d" and (args.tp > 1 or args.pp > 1 or args.sp > 1 or args.zero_stage):
        raise InputError(f"--tp/--pp/--sp/--zero_stage need --plugin 3d (got --plugin {args.plugin})")
    if args.freeze_non_embeds_params and args.train_new_rows_only:
        raise InputError("choose one of --freeze_non_embeds_params and --train_new_rows_only")
    if args.lora_rank and (args.freeze_non_embeds_params or args.train_new_rows_only):
        raise InputError("LoRA (--lora_rank) cannot be combined with the freeze modes")
    if args.kl_coef < 0:
        raise InputError("--kl_coef cannot be negative")
    if args.betas is None:  # 0.9/0.95 suits both: LLaMA's AdamW and BUT-FIT's LionW
        args.betas = [0.9, 0.95]
    if args.tokenizer_dir is None:
        args.tokenizer_dir = args.pretrained
    for flag in ("pretrained", "tokenizer_dir"):
        if not Path(getattr(args, flag)).is_dir():
            raise InputError(f"--{flag} folder not found", getattr(args, flag))


def effective_config(args: argparse.Namespace) -> dict:
    return {key: value for key, value in sorted(vars(args).items())}


def write_config_file(args: argparse.Namespace, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(effective_config(args), indent=2) + "\n", encoding="utf-8")
