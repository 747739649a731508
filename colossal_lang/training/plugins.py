"""Booster plugins by name, and the checks that reject what a plugin cannot honour before any work starts."""

from __future__ import annotations

import argparse
import importlib.util

import torch

from colossal_lang.errors import InputError


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


def check_plugin(args: argparse.Namespace, world_size: int, model_config=None) -> None:
    """Raise InputError for combinations the chosen plugin, device or model cannot run."""
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
    if args.optimizer == "lionw" and args.plugin in ("gemini", "gemini_auto"):
        raise InputError("Gemini accepts only Colossal-AI's Adam optimizers; use --optimizer adamw or another plugin for LionW")
    if args.lora_rank and args.plugin not in ("ddp", "zero2", "zero2_cpu"):
        # The adapters are merged into the final Hugging Face folder on rank 0, which needs the whole, unmodified
        # model there: Gemini shards it, and 3d's shardformer pads or splits it (Colossal-AI 0.5.0).
        raise InputError(f"LoRA runs with --plugin ddp, zero2 or zero2_cpu, not {args.plugin}")
    if args.plugin in ("gemini", "gemini_auto") and (args.freeze_non_embeds_params or args.train_new_rows_only):
        raise InputError("Gemini needs every parameter to train; use ddp, zero2 or 3d for the freeze modes")
    if args.train_new_rows_only and args.plugin != "ddp":
        raise InputError("--train_new_rows_only masks gradients of single rows, which only --plugin ddp keeps whole")
    if args.plugin == "3d":
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
    # all_to_all (Ulysses) splits the heads over --sp ranks, then TP over --tp (shardformer/policies/llama.py:64-70, 96-102).
    head_split = args.tp * (args.sp if args.plugin == "3d" and args.sp_mode == "all_to_all" else 1)
    if model_config is not None and head_split > 1:
        heads = getattr(model_config, "num_attention_heads", None)
        kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
        if heads and (heads % head_split or kv_heads % head_split):
            split = f"--tp {args.tp}" + (f" x --sp {args.sp} (all_to_all)" if head_split != args.tp else "")
            raise InputError(f"{split} = {head_split} must divide the attention heads ({heads}) and key/value heads ({kv_heads})")
    if model_config is not None and args.pp > 1:
        layers = getattr(model_config, "num_hidden_layers", 0)
        if layers < args.pp:
            raise InputError(f"--pp {args.pp} exceeds the {layers} decoder layers")


def make_plugin(args: argparse.Namespace):
    """The Booster plugin for --plugin, configured for precision, clipping and parallel sizes."""
    from colossalai.booster.plugin import GeminiPlugin, HybridParallelPlugin, LowLevelZeroPlugin, TorchDDPPlugin

    precision = args.mixed_precision
    if args.plugin == "ddp":
        # Precision and clipping are the loop's job here: fp32 master weights + autocast, clipping on all grads.
        return TorchDDPPlugin(find_unused_parameters=bool(args.lora_rank), broadcast_buffers=False)
    if args.plugin in ("gemini", "gemini_auto"):
        return GeminiPlugin(
            placement_policy="static" if args.plugin == "gemini" else "auto",
            precision=precision, initial_scale=2**16, max_norm=args.grad_clip,
            enable_gradient_accumulation=args.accumulation_steps > 1,
            enable_flash_attention=args.use_flash_attn,
        )
    if args.plugin in ("zero2", "zero2_cpu"):
        return LowLevelZeroPlugin(stage=2, precision=precision, initial_scale=2**16, max_norm=args.grad_clip,
                                  cpu_offload=args.plugin == "zero2_cpu")
    return HybridParallelPlugin(
        tp_size=args.tp, pp_size=args.pp, sp_size=args.sp,
        enable_sequence_parallelism=args.sp > 1,
        sequence_parallelism_mode=args.sp_mode if args.sp > 1 else None,
        zero_stage=args.zero_stage, precision=precision, max_norm=args.grad_clip,
        microbatch_size=args.microbatch_size if args.pp > 1 else None,
        enable_flash_attention=args.use_flash_attn, enable_fused_normalization=apex_available(),
        initial_scale=2**16,
    )


def sequence_multiple(args: argparse.Namespace) -> int:
    """What the sequence length must be a multiple of for sequence parallelism to split it evenly (1: no SP)."""
    if args.plugin != "3d" or args.sp <= 1:
        return 1
    if args.sp_mode in ("split_gather", "ring"):
        return args.tp
    return 2 * args.sp if args.sp_mode == "ring_attn" else args.sp  # zigzag ring attention cuts 2 x sp chunks


def plugin_clips_gradients(args: argparse.Namespace) -> bool:
    """Whether the plugin's optimizer clips (and reports the norm) itself."""
    return args.plugin != "ddp"


def booster_mixed_precision(args: argparse.Namespace):
    """The Booster-level mixed precision for plugins that leave precision to it (ddp + fp16: torch AMP + scaler)."""
    if args.plugin == "ddp" and args.mixed_precision == "fp16":
        return "fp16"
    return None


def data_parallel_info(plugin, args: argparse.Namespace, world_size: int, rank: int) -> tuple[int, int]:
    """(data-parallel size, this process's data-parallel rank)."""
    if args.plugin == "3d":
        group = plugin.dp_group
        return torch.distributed.get_world_size(group), torch.distributed.get_rank(group)
    return world_size, rank
