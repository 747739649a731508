"""train.py's configuration: typed groups of settings, each field one flag (same name), documented by its help.

`flags.parse_train_args` parses the command line (and `--config` YAML/JSON), then `resolve.resolve` checks and
completes it once: derived defaults (`tokenizer_dir`), Colossal-LLaMA spellings mapped onto their settings,
and every check that needs no model or device. Builders take only their own group. The groups and the flags
are built from the same fields (flags.py), so each flag is defined once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import List, Optional

from colossal_lang.errors import InputError

PLUGINS = ("ddp", "gemini", "gemini_auto", "zero2", "zero2_cpu", "3d")
PRECISIONS = ("fp32", "fp16", "bf16")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def flag(help: str, **argparse_options) -> dict:
    """Field metadata: the flag's help and anything argparse needs beyond name, type and default."""
    return {"help": help, **argparse_options}


@dataclass
class ModelConfig:
    """model"""
    pretrained: Optional[str] = field(default=None, metadata=flag("Hugging Face model folder (AutoModelForCausalLM)", required=True))
    tokenizer_dir: Optional[str] = field(default=None, metadata=flag("tokenizer folder (default: --pretrained)"))
    use_grad_checkpoint: bool = field(default=False, metadata=flag("gradient checkpointing (less memory, more compute)"))
    use_flash_attn: bool = field(default=False, metadata=flag("flash_attention_2 (needs flash-attn and CUDA); SDPA otherwise"))
    attention: str = field(default="auto", metadata=flag("auto: what the dataset's manifest says it was packed for",
                                                         choices=("auto", "doc_causal", "causal")))


@dataclass
class DataConfig:
    """data"""
    dataset: List[str] = field(default_factory=list, metadata=flag(
        "prepared dataset folder(s) (manifest.json) or part folders", nargs="+", required=True))
    batch_size: int = field(default=2, metadata=flag("sequences per data-parallel rank per micro-batch",
                                                     aliases=("--micro_batch_size",)))
    accumulation_steps: int = field(default=1, metadata=flag("micro-batches per optimizer step"))
    max_length: Optional[int] = field(default=None, metadata=flag(
        "longest sequence this run accepts: refused when the dataset was prepared for longer ones (default: the dataset's)"))
    pad_token: Optional[str] = field(default=None, metadata=flag(
        "which token pads batches, and becomes the saved tokenizer's pad token (default: the tokenizer's pad, else eos)",
        choices=("eos", "unk")))
    padding_mode: str = field(default="longest", metadata=flag(
        "longest: pad each batch to its longest row; max_length: to --max_length (or the dataset's)",
        choices=("longest", "max_length")))
    num_workers: int = field(default=0, metadata=flag("DataLoader worker processes"))


@dataclass
class CheckpointConfig:
    """checkpoints"""
    load_checkpoint: Optional[str] = field(default=None, metadata=flag(
        "'latest' (newest complete checkpoint in --save_dir), a checkpoint folder, or .../modeling (weights only)"))
    save_interval: int = field(default=1000, metadata=flag("save a checkpoint every N optimizer steps (0: only at the end)"))
    save_dir: str = field(default="checkpoints", metadata=flag("checkpoints and the final Hugging Face folder go here"))
    keep_last: int = field(default=0, metadata=flag("keep only the newest N checkpoints (0: keep all)"))
    save_each_epoch: bool = field(default=False, metadata=flag(
        "also save when an epoch ends (Colossal-LLaMA's default; --skip_save_each_epoch turns it off)",
        negations=("--skip_save_each_epoch",)))
    config_file: Optional[str] = field(default=None, metadata=flag("where to write the effective configuration (JSON)"))


@dataclass
class ParallelConfig:
    """parallelism and precision"""
    plugin: str = field(default="ddp", metadata=flag("Booster plugin", choices=PLUGINS))
    mixed_precision: str = field(default="bf16", metadata=flag("training precision", choices=PRECISIONS))
    tp: int = field(default=1, metadata=flag("tensor parallel size (3d)"))
    pp: int = field(default=1, metadata=flag("pipeline parallel size (3d)"))
    sp: int = field(default=1, metadata=flag("sequence parallel size (3d)"))
    sp_mode: str = field(default="split_gather", metadata=flag(
        "sequence parallelism mode (3d)", choices=("split_gather", "ring", "all_to_all", "ring_attn")))
    enable_sequence_parallelism: bool = field(default=False, metadata=flag(
        "Colossal-LLaMA's switch: with split_gather/ring and --sp 1, sequence parallelism runs over the --tp ranks"))
    zero_stage: int = field(default=0, metadata=flag("ZeRO stage inside the 3d plugin", choices=(0, 1, 2),
                                                     aliases=("--zero",)))
    zero_cpu_offload: bool = field(default=False, metadata=flag(
        "offload optimizer states to CPU: 3d with --zero_stage 1/2; with zero2 it means --plugin zero2_cpu"))
    microbatch_size: int = field(default=1, metadata=flag("pipeline micro-batch size (3d with --pp > 1)"))


@dataclass
class OptimConfig:
    """optimisation"""
    num_epochs: int = field(default=1, metadata=flag("epochs to train (unless --max_steps)"))
    max_steps: int = field(default=0, metadata=flag(
        "length of the run in optimizer steps, cycling epochs as needed (0: --num_epochs decides)"))
    stop_at_step: int = field(default=0, metadata=flag(
        "end this launch after step N with a checkpoint, as if interrupted; the schedule still spans the whole run"))
    lr: float = field(default=3e-4, metadata=flag("peak learning rate"))
    optimizer: str = field(default="adamw", metadata=flag("optimizer", choices=("adamw", "lionw")))
    # 0.9/0.95 suits both: LLaMA's AdamW and BUT-FIT's LionW.
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95], metadata=flag("optimizer betas", nargs=2))
    eps: float = field(default=1e-8, metadata=flag("AdamW epsilon"))
    weight_decay: float = field(default=0.1, metadata=flag("not applied to norms, biases, frozen rows"))
    lr_schedule: str = field(default="cosine", metadata=flag("LR schedule", choices=("cosine", "wsd", "constant")))
    warmup_steps: Optional[int] = field(default=None, metadata=flag("linear warm-up steps (default: 2.5%% of the steps)"))
    min_lr_ratio: float = field(default=0.1, metadata=flag("final LR as a fraction of --lr"))
    decay_ratio: float = field(default=0.2, metadata=flag("wsd: fraction of the steps spent decaying"))
    grad_clip: float = field(default=1.0, metadata=flag("max global gradient norm (0: no clipping)",
                                                        aliases=("--gradient_clipping",)))
    seed: int = field(default=42, metadata=flag("seed of the data order and of anything random"))

    def warmup_for(self, total_steps: int) -> int:
        return self.warmup_steps if self.warmup_steps is not None else max(1, round(0.025 * total_steps))


@dataclass
class AdaptationConfig:
    """language adaptation: freeze modes, NEFTune, LoRA, KL to the original model (Vikhr)"""
    use_neft: bool = field(default=False, metadata=flag("NEFTune noise on input embeddings"))
    neft_alpha: float = field(default=5.0, metadata=flag("NEFTune noise scale"))
    freeze_non_embeds_params: bool = field(default=False, metadata=flag("train only the input embeddings and the LM head"))
    train_new_rows_only: bool = field(default=False, metadata=flag(
        "train only the embedding/head rows of new tokens (ids >= --new_token_start)"))
    new_token_start: Optional[int] = field(default=None, metadata=flag(
        "first new token id (default: the reference model's vocabulary size)"))
    lora_rank: int = field(default=0, metadata=flag("> 0 trains LoRA adapters through booster.enable_lora"))
    lora_alpha: float = field(default=32.0, metadata=flag("LoRA scale"))
    lora_dropout: float = field(default=0.0, metadata=flag("LoRA dropout"))
    lora_target_modules: List[str] = field(default_factory=lambda: list(LORA_TARGETS), metadata=flag(
        "modules that get adapters", nargs="+"))
    lora_train_embeddings: Optional[bool] = field(default=None, metadata=flag(
        "also train embeddings and head (default: yes when the vocabulary grew)"))
    kl_coef: float = field(default=0.0, metadata=flag("weight of KL(reference || model) over the original vocabulary"))
    reference_model: Optional[str] = field(default=None, metadata=flag("frozen original model (default: --pretrained)"))
    kl_categories: Optional[List[str]] = field(default=None, metadata=flag(
        "categories (replay data) that get the KL term (default: all)", nargs="*"))
    stages: Optional[str] = field(default=None, metadata=flag(
        "what learns when, as WHAT:STEPS,... with WHAT new_rows|embeddings|all; the last may omit STEPS "
        "(e.g. new_rows:200,embeddings:300,all; see docs/training.md)"))


@dataclass
class GuardConfig:
    """loss-spike guard"""
    spike_window: int = field(default=50, metadata=flag("recent losses the median is taken over"))
    spike_factor: float = field(default=3.0, metadata=flag("a loss above factor x median is a spike (0: off)"))
    spike_min_history: int = field(default=10, metadata=flag("losses needed before spikes are judged"))
    spike_rollback_after: int = field(default=3, metadata=flag("spikes since the last checkpoint that trigger a rollback"))
    spike_lr_factor: float = field(default=0.5, metadata=flag("LR multiplier applied at each rollback"))


@dataclass
class LoggingConfig:
    """logging"""
    tensorboard_dir: Optional[str] = field(default=None, metadata=flag("tensorboard event folder (default: none)"))
    log_interval: int = field(default=1, metadata=flag("tensorboard scalars every N steps (at least 1)"))
    loss_log: Optional[str] = field(default=None, metadata=flag(
        "append one JSON line per step (step, stage, loss, lr, ...) and per event to this file (rank 0)"))
    log_samples: bool = field(default=False, metadata=flag("add the dataset row indices of every step (all ranks) to --loss_log"))
    progress: bool = field(default=True, metadata=flag("progress bar on rank 0"))
    benchmark: bool = field(default=False, metadata=flag(
        "Colossal-LLaMA's random-data benchmark: refused, see benchmarks/bench_training.py"))
    num_samples: Optional[int] = field(default=None, metadata=flag("Colossal-LLaMA's --benchmark sample count (unused)"))


GROUPS = {"model": ModelConfig, "data": DataConfig, "checkpoint": CheckpointConfig, "parallel": ParallelConfig,
          "optim": OptimConfig, "adaptation": AdaptationConfig, "guard": GuardConfig, "logging": LoggingConfig}


@dataclass
class TrainConfig:
    model: ModelConfig
    data: DataConfig
    checkpoint: CheckpointConfig
    parallel: ParallelConfig
    optim: OptimConfig
    adaptation: AdaptationConfig
    guard: GuardConfig
    logging: LoggingConfig
    notes: List[str] = field(default_factory=list)  # what resolve() mapped, for the log

    @classmethod
    def from_flat(cls, values: dict) -> "TrainConfig":
        groups = {name: group(**{f.name: values[f.name] for f in fields(group) if f.name in values})
                  for name, group in GROUPS.items()}
        return cls(**groups)

    def flat(self) -> dict:
        """{flag name: value}: the effective configuration (config_file, running_states.json)."""
        values = {}
        for name in GROUPS:
            values.update(asdict(getattr(self, name)))
        return dict(sorted(values.items()))


def write_config_file(config: TrainConfig, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(config.flat(), indent=2) + "\n", encoding="utf-8")


def check_positive(values: dict) -> None:
    for name, value in values.items():
        if value < 1:
            raise InputError(f"--{name} must be at least 1 (got {value})")
