"""Checks and completions of a parsed TrainConfig that need no model, data or device (run once, after parsing).

Colossal-LLaMA's train.py flags are honoured here or mapped onto the settings that do the same; the two that
cannot be honoured are refused with the replacement named. What was mapped is noted in `config.notes`.
"""

from __future__ import annotations

from pathlib import Path

from colossal_lang.errors import InputError
from colossal_lang.training.config import TrainConfig, check_positive
from colossal_lang.training.stages import parse_stages


def resolve(config: TrainConfig) -> None:
    check_numbers(config)
    check_adaptation(config)
    map_colossal_llama_flags(config)
    if config.model.tokenizer_dir is None:
        config.model.tokenizer_dir = config.model.pretrained
    for flag in ("pretrained", "tokenizer_dir"):
        if not Path(getattr(config.model, flag)).is_dir():
            raise InputError(f"--{flag} folder not found", getattr(config.model, flag))


def check_numbers(config: TrainConfig) -> None:
    data, optim, parallel, checkpoint = config.data, config.optim, config.parallel, config.checkpoint
    check_positive({"batch_size": data.batch_size, "accumulation_steps": data.accumulation_steps,
                    "num_epochs": optim.num_epochs, "tp": parallel.tp, "pp": parallel.pp, "sp": parallel.sp,
                    "microbatch_size": parallel.microbatch_size, "log_interval": config.logging.log_interval})
    if data.max_length is not None:
        check_positive({"max_length": data.max_length})
    if optim.lr <= 0:
        raise InputError("--lr must be positive")
    if not 0.0 <= optim.min_lr_ratio <= 1.0:
        raise InputError("--min_lr_ratio must lie in [0, 1]")
    if min(optim.max_steps, optim.stop_at_step, checkpoint.save_interval, checkpoint.keep_last) < 0:
        raise InputError("--max_steps, --stop_at_step, --save_interval and --keep_last cannot be negative")


def check_adaptation(config: TrainConfig) -> None:
    adaptation = config.adaptation
    if adaptation.freeze_non_embeds_params and adaptation.train_new_rows_only:
        raise InputError("choose one of --freeze_non_embeds_params and --train_new_rows_only")
    if adaptation.lora_rank and (adaptation.freeze_non_embeds_params or adaptation.train_new_rows_only):
        raise InputError("LoRA (--lora_rank) cannot be combined with the freeze modes")
    if adaptation.kl_coef < 0:
        raise InputError("--kl_coef cannot be negative")
    if adaptation.stages is not None:
        parse_stages(adaptation.stages)  # refuses a malformed SPEC now, before any process starts
        if adaptation.freeze_non_embeds_params or adaptation.train_new_rows_only or adaptation.lora_rank:
            raise InputError("--stages decides what trains: drop --freeze_non_embeds_params, --train_new_rows_only "
                             "and --lora_rank")


def map_colossal_llama_flags(config: TrainConfig) -> None:
    """--benchmark, --num_samples, --zero_cpu_offload and --enable_sequence_parallelism (Colossal-LLaMA's train.py)."""
    from colossal_lang.training.plugins import map_parallel_flags

    if config.logging.benchmark:
        raise InputError("--benchmark (Colossal-LLaMA's run on random tokens) is not supported: measure throughput with "
                         "benchmarks/bench_training.py, or train on a prepared dataset with --max_steps N")
    if config.logging.num_samples is not None:
        config.notes.append("--num_samples ignored: it only sized Colossal-LLaMA's --benchmark data")
    config.notes.extend(map_parallel_flags(config.parallel))
