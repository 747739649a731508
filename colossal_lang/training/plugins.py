"""Booster plugins by name, and the checks that reject what a plugin cannot honour before any work starts."""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass
from typing import Optional

import torch

from colossal_lang.errors import InputError
from colossal_lang.io.dtypes import PRECISION_DTYPES as DTYPES


def flat_view(config) -> argparse.Namespace:
    """The checks below read across groups (precision, adaptation, batch): one flat view of them, read-only."""
    return argparse.Namespace(**config.flat())


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


def apex_available() -> bool:
    """Shardformer's fused RMSNorm is apex's: without apex, Colossal-AI 0.5.0 calls None and crashes."""
    if not torch.cuda.is_available():
        return False
    try:
        import apex.normalization  # noqa: F401
    except ImportError:
        return False
    return True


def check_plugin(config, world_size: int, model_config=None) -> None:
    """Raise InputError for combinations the chosen plugin, device or model cannot run (config: a TrainConfig)."""
    args = flat_view(config)
    check_device(args)
    check_adaptation_plugin(args)
    if args.plugin == "3d":
        check_3d(args, world_size)
    if model_config is not None:
        check_model_split(args, model_config)


def check_device(args) -> None:
    """Precision, flash attention and parallel sizes against the plugin and the device."""
    if args.plugin != "3d" and (args.tp > 1 or args.pp > 1 or args.sp > 1 or args.zero_stage):
        raise InputError(f"--tp/--pp/--sp/--zero_stage need --plugin 3d (got --plugin {args.plugin})")
    cuda = torch.cuda.is_available()
    if args.plugin != "ddp" and not cuda:
        raise InputError(f"--plugin {args.plugin} needs CUDA; on CPU only --plugin ddp runs (over gloo)")
    if not cuda and args.mixed_precision == "fp16":
        raise InputError("--mixed_precision fp16 needs CUDA; on CPU use fp32 or bf16")
    if args.plugin in ("gemini", "gemini_auto", "zero2", "zero2_cpu") and args.mixed_precision == "fp32":
        raise InputError(f"--plugin {args.plugin} trains in fp16 or bf16; use --plugin ddp or 3d for fp32")
    if args.use_flash_attn and args.mixed_precision == "fp32":
        # transformers hands flash-attn fp32 tensors when no autocast is on (integrations/flash_attention.py:36-44),
        # and its kernels take only fp16/bf16; shardformer's ColoAttention likewise.
        raise InputError("--use_flash_attn needs --mixed_precision bf16 or fp16 (flash-attn has no fp32 kernels)")
    if args.use_flash_attn and not flash_attn_available():
        raise InputError("--use_flash_attn needs the flash-attn package and a CUDA device")


def check_adaptation_plugin(args) -> None:
    """Optimizer, LoRA, freeze modes and stages against what the plugin can keep whole."""
    if args.optimizer == "lionw" and args.plugin in ("gemini", "gemini_auto"):
        raise InputError("Gemini accepts only Colossal-AI's Adam optimizers; use --optimizer adamw or another plugin for LionW")
    if args.lora_rank and args.plugin not in ("ddp", "zero2", "zero2_cpu"):
        # The adapters are merged into the final Hugging Face folder on rank 0, which needs the whole, unmodified
        # model there: Gemini shards it, and 3d's shardformer pads or splits it (Colossal-AI 0.5.0).
        raise InputError(f"LoRA runs with --plugin ddp, zero2 or zero2_cpu, not {args.plugin}")
    if args.plugin in ("gemini", "gemini_auto") and (args.freeze_non_embeds_params or args.train_new_rows_only):
        raise InputError("Gemini needs every parameter to train; use ddp, zero2 or 3d for the freeze modes")
    if args.stages and args.plugin != "ddp":
        # Stages drop and mask gradients of whole parameters and rows after backward; the sharded plugins keep
        # gradients in their own buckets (zero2, gemini) or split the vocabulary over ranks (3d).
        raise InputError(f"--stages runs with --plugin ddp only (the sharded plugins hold gradients in their own "
                         f"buckets), not {args.plugin}")
    if args.train_new_rows_only and args.plugin != "ddp":
        raise InputError("--train_new_rows_only masks gradients of single rows, which only --plugin ddp keeps whole")


def check_3d(args, world_size: int) -> None:
    """HybridParallelPlugin's sizes, sequence-parallel modes and ZeRO stages."""
    # split_gather/ring run sequence parallelism inside the TP group: no ranks of their own.
    sp_ranks = 1 if args.sp_mode in ("split_gather", "ring") else args.sp
    model_parallel = args.tp * args.pp * sp_ranks
    if world_size % model_parallel:
        raise InputError(f"--tp {args.tp} x --pp {args.pp} x --sp {sp_ranks} (--sp_mode {args.sp_mode}) = "
                         f"{model_parallel} does not divide {world_size} processes")
    if args.sp > 1 and args.sp_mode in ("split_gather", "ring") and args.tp != args.sp:
        raise InputError(f"--sp_mode {args.sp_mode} runs sequence parallelism over the TP group: set --sp equal to --tp")
    if args.pp > 1 and args.use_neft:
        raise InputError("--use_neft hooks the embedding output, which a pipeline stage may not hold; use --pp 1")
    if args.kl_coef > 0:
        raise InputError("--kl_coef needs the full logits on one rank, which --plugin 3d shards; use ddp or zero2")
    if args.pp > 1 and args.accumulation_steps > 1:
        raise InputError("under pipeline parallelism raise --batch_size (split into --microbatch_size) instead of --accumulation_steps")
    if args.pp > 1 and args.batch_size % args.microbatch_size:
        raise InputError("--batch_size must be a multiple of --microbatch_size under pipeline parallelism")
    if args.pp > 1 and args.batch_size // args.microbatch_size < args.pp:
        # OneForwardOneBackwardSchedule.load_batch asserts num_microbatches >= num_stages (one_f_one_b.py:93-95).
        raise InputError(f"--batch_size {args.batch_size} / --microbatch_size {args.microbatch_size} = "
                         f"{args.batch_size // args.microbatch_size} micro-batches, fewer than the {args.pp} pipeline stages")
    if args.sp > 1 and args.sp_mode == "ring_attn" and not flash_attn_available():
        # HybridParallelPlugin turns flash attention on for ring attention (hybrid_parallel_plugin.py, __init__).
        raise InputError("--sp_mode ring_attn runs on flash attention: it needs the flash-attn package and CUDA")
    if args.zero_stage and args.mixed_precision == "fp32":
        raise InputError("--zero_stage 1/2 under --plugin 3d trains in fp16 or bf16; use --zero_stage 0 for fp32")
    if args.zero_stage == 2 and args.pp > 1:
        raise InputError("ZeRO stage 2 cannot be combined with pipeline parallelism; use --zero_stage 1")


def check_model_split(args, model_config) -> None:
    """Tensor/sequence parallelism must divide the heads, pipeline parallelism the layers."""
    # all_to_all (Ulysses) splits the heads over --sp ranks, then TP over --tp (shardformer/policies/llama.py:64-70, 96-102).
    head_split = args.tp * (args.sp if args.plugin == "3d" and args.sp_mode == "all_to_all" else 1)
    if head_split > 1:
        heads = getattr(model_config, "num_attention_heads", None)
        kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
        if heads and (heads % head_split or kv_heads % head_split):
            split = f"--tp {args.tp}" + (f" x --sp {args.sp} (all_to_all)" if head_split != args.tp else "")
            raise InputError(f"{split} = {head_split} must divide the attention heads ({heads}) and key/value heads ({kv_heads})")
    if args.pp > 1:
        layers = getattr(model_config, "num_hidden_layers", 0)
        if layers < args.pp:
            raise InputError(f"--pp {args.pp} exceeds the {layers} decoder layers")


@dataclass(frozen=True)
class PluginTraits:
    """What the chosen plugin does, asked by the loop, setup, step and checkpoints instead of comparing names."""
    name: str
    clips_gradients: bool  # its optimizer clips, and measures the norm, inside step(); else the loop clips
    param_dtype: torch.dtype  # the dtype the model is built in (ddp: fp32 master weights; others cast themselves)
    autocast_dtype: Optional[torch.dtype]  # the loop runs forward passes under torch.autocast in this dtype
    amp_scaler: bool  # ddp + fp16: the booster's torch AMP GradScaler sits in the optimizer wrapper
    booster_mixed_precision: Optional[str]  # what Booster(mixed_precision=...) gets
    pipeline: bool  # Colossal-AI's schedule runs forward and backward (3d, --pp > 1)
    model_parallel: bool  # shardformer: its own loss from labels, its own masks, data-parallel groups of its own
    shards_model: bool  # weights live sharded: the final folder is gathered through the booster
    no_sync: bool  # a backward can skip the gradient all-reduce (accumulation)
    no_sync_on_inner_model: bool  # booster.no_sync wants the innermost wrapper (ddp under fp16's AMP wrapper)
    sequence_multiple: int  # the sequence length must be a multiple of this (sequence parallelism)


def plugin_traits(config, supports_no_sync: bool = True) -> PluginTraits:
    parallel = config.parallel
    name, precision = parallel.plugin, parallel.mixed_precision
    ddp, hybrid = name == "ddp", name == "3d"
    return PluginTraits(
        name=name, clips_gradients=not ddp,
        param_dtype=torch.float32 if ddp else DTYPES[precision],
        autocast_dtype=DTYPES[precision] if ddp and precision == "bf16" else None,
        amp_scaler=ddp and precision == "fp16", booster_mixed_precision="fp16" if ddp and precision == "fp16" else None,
        pipeline=hybrid and parallel.pp > 1, model_parallel=hybrid, shards_model=not ddp,
        # HybridParallelPlugin.support_no_sync() says True but its no_sync asserts zero_stage != 2
        # (hybrid_parallel_plugin.py:1276, 1501).
        no_sync=supports_no_sync and not (hybrid and parallel.zero_stage == 2),
        no_sync_on_inner_model=ddp, sequence_multiple=sequence_multiple(parallel),
    )


def make_plugin(config):
    """The Booster plugin for --plugin, configured for precision, clipping and parallel sizes, and its traits."""
    plugin = build_plugin(config)
    return plugin, plugin_traits(config, supports_no_sync=bool(plugin.support_no_sync()))


def build_plugin(config):
    from colossalai.booster.plugin import GeminiPlugin, HybridParallelPlugin, LowLevelZeroPlugin, TorchDDPPlugin

    parallel, max_norm = config.parallel, config.optim.grad_clip
    precision = parallel.mixed_precision
    if parallel.plugin == "ddp":
        # Precision and clipping are the loop's job here: fp32 master weights + autocast, clipping on all grads.
        return TorchDDPPlugin(find_unused_parameters=bool(config.adaptation.lora_rank), broadcast_buffers=False)
    if parallel.plugin in ("gemini", "gemini_auto"):
        return GeminiPlugin(
            placement_policy="static" if parallel.plugin == "gemini" else "auto",
            precision=precision, initial_scale=2**16, max_norm=max_norm,
            enable_gradient_accumulation=config.data.accumulation_steps > 1,
            enable_flash_attention=config.model.use_flash_attn,
        )
    if parallel.plugin in ("zero2", "zero2_cpu"):
        return LowLevelZeroPlugin(stage=2, precision=precision, initial_scale=2**16, max_norm=max_norm,
                                  cpu_offload=parallel.plugin == "zero2_cpu")
    return HybridParallelPlugin(
        tp_size=parallel.tp, pp_size=parallel.pp, sp_size=parallel.sp,
        enable_sequence_parallelism=parallel.sp > 1,
        sequence_parallelism_mode=parallel.sp_mode if parallel.sp > 1 else None,
        zero_stage=parallel.zero_stage, cpu_offload=parallel.zero_cpu_offload, precision=precision, max_norm=max_norm,
        microbatch_size=parallel.microbatch_size if parallel.pp > 1 else None,
        enable_flash_attention=config.model.use_flash_attn, enable_fused_normalization=apex_available(),
        initial_scale=2**16,
    )


def map_parallel_flags(parallel) -> list:
    """Colossal-LLaMA's --zero_cpu_offload and --enable_sequence_parallelism onto these plugins; returns notes."""
    notes = []
    if parallel.zero_cpu_offload:
        if parallel.plugin == "zero2":
            parallel.plugin = "zero2_cpu"
            notes.append("--zero_cpu_offload with --plugin zero2: running --plugin zero2_cpu")
        elif parallel.plugin == "3d" and parallel.zero_stage == 0:
            raise InputError("--zero_cpu_offload under --plugin 3d needs --zero_stage 1 or 2")
        elif parallel.plugin not in ("3d", "zero2_cpu"):
            raise InputError(f"--zero_cpu_offload does not apply to --plugin {parallel.plugin}: use --plugin zero2_cpu, "
                             "gemini_auto, or 3d with --zero_stage 1/2")
    if parallel.enable_sequence_parallelism and parallel.sp == 1:
        if parallel.plugin != "3d":
            raise InputError("--enable_sequence_parallelism needs --plugin 3d")
        if parallel.sp_mode not in ("split_gather", "ring"):
            raise InputError(f"--sp_mode {parallel.sp_mode} runs on ranks of its own: set --sp N instead of "
                             "--enable_sequence_parallelism")
        if parallel.tp == 1:
            raise InputError(f"--sp_mode {parallel.sp_mode} runs sequence parallelism over the TP ranks: it needs --tp > 1")
        parallel.sp = parallel.tp
        notes.append(f"--enable_sequence_parallelism: --sp {parallel.sp} (the --tp ranks, --sp_mode {parallel.sp_mode})")
    return notes


def sequence_multiple(parallel) -> int:
    """What the sequence length must be a multiple of for sequence parallelism to split it evenly (1: no SP)."""
    if parallel.plugin != "3d" or parallel.sp <= 1:
        return 1
    if parallel.sp_mode in ("split_gather", "ring"):
        return parallel.tp
    return 2 * parallel.sp if parallel.sp_mode == "ring_attn" else parallel.sp  # zigzag ring attention cuts 2 x sp chunks


def data_parallel_info(plugin, traits: PluginTraits, world_size: int, rank: int) -> tuple[int, int]:
    """(data-parallel size, this process's data-parallel rank)."""
    if traits.model_parallel:
        group = plugin.dp_group
        return torch.distributed.get_world_size(group), torch.distributed.get_rank(group)
    return world_size, rank
