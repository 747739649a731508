"""Reaching through the Booster's wrappers (Colossal-AI 0.5.0) where its own helpers fall short.

- ddp + fp16: Booster.boost wraps the plugin's TorchDDPModel in a TorchAMPModule (booster/booster.py, boost:
  plugin.configure first, then mixed_precision.configure). TorchDDPPlugin.no_sync asserts it gets a
  TorchDDPModel (booster/plugin/torch_ddp_plugin.py:308), and ModelWrapper.unwrap calls the inner wrapper's
  unwrap() without passing `unwrap_peft` on (interface/model.py:118-119), so `unwrap(unwrap_peft=False)` of
  the outer wrapper still hands back PeftUnwrapMixin, which has no merge_and_unload.
- 3d with ZeRO-2: HybridParallelPlugin.support_no_sync() says True (hybrid_parallel_plugin.py:1276) but its
  no_sync asserts zero_stage != 2 (hybrid_parallel_plugin.py:1501).
- Gemini/ZeRO/hybrid fp16: the optimizers record the norm of the *scaled* gradients as the grad norm
  (low_level_optim.py:583-584, gemini_optimizer.py:257-259, mixed_precision_optimizer.py:195-196), and on an
  overflow they skip the step without touching it (stale value); their fp16 mixin keeps the loss scale and
  whether the last check found an overflow (amp/naive_amp/mixed_precision_mixin/fp16.py).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Optional


def _model_wrapper_class():
    from colossalai.interface import ModelWrapper

    return ModelWrapper


def innermost_wrapper(model):
    """The innermost Booster ModelWrapper (TorchDDPModel under a TorchAMPModule), or `model` itself."""
    wrapper = _model_wrapper_class()
    while isinstance(model, wrapper) and isinstance(model.module, wrapper):
        model = model.module
    return model


def user_module(model):
    """The model as built before boosting, PEFT wrapper kept (a PeftModel under LoRA)."""
    model = innermost_wrapper(model)
    if isinstance(model, _model_wrapper_class()):
        return model.unwrap(unwrap_peft=False)
    return model


def no_sync(booster, model, optimizer, traits):
    """Context in which a backward accumulates gradients without communicating (nullcontext where not possible)."""
    if not traits.no_sync:
        return nullcontext()
    target = innermost_wrapper(model) if traits.no_sync_on_inner_model else model
    return booster.no_sync(target, optimizer)


def fp16_mixin(optimizer):
    """The fp16 loss-scaling mixin of a Gemini/ZeRO/hybrid optimizer wrapper, or None (bf16, fp32, ddp)."""
    for name in ("mixed_precision_mixin", "mix_precision_mixin", "mixed_precision"):
        mixin = getattr(optimizer, name, None)
        if mixin is not None and hasattr(mixin, "grad_scaler") and hasattr(mixin, "found_overflow"):
            return mixin
    return None


def plugin_optimizer_step(optimizer) -> tuple[Optional[float], bool]:
    """optimizer.step() of a plugin that clips inside it; returns (grad norm of the unscaled gradients, overflowed).

    The norm is None where the plugin computed none (max_norm 0) or the step was skipped for an fp16 overflow.
    """
    mixin = fp16_mixin(optimizer)
    scale = mixin.loss_scale if mixin is not None else 1.0  # the scale the gradients were computed with
    if hasattr(optimizer, "_current_grad_norm"):
        optimizer._current_grad_norm = None  # so that a stale value from an earlier step is never reported
    optimizer.step()
    overflow = mixin is not None and bool(mixin.found_overflow.item() > 0)
    getter = getattr(optimizer, "get_grad_norm", None)
    norm = getter() if getter is not None else None
    if overflow or norm is None:
        return None, overflow
    norm = float(norm) / scale
    return norm, False


def reset_gradient_accumulation(optimizer) -> None:
    """Gemini with gradient accumulation adds each backward into the grad chunks until a *successful* step resets
    `chunk_manager.accumulating_grads` (gemini_optimizer.py:293; gemini_ddp.py:341, 381-403). A step skipped by
    the spike guard, or by Gemini itself on an fp16 overflow (gemini_optimizer.py:276-284), leaves it set, so the
    skipped batch's gradients (NaN included) would be added into the next step's. Reset it after every step."""
    chunk_manager = getattr(getattr(optimizer, "module", None), "chunk_manager", None)
    if chunk_manager is not None and hasattr(chunk_manager, "accumulating_grads"):
        chunk_manager.accumulating_grads = False


def finite(value: Optional[float]) -> bool:
    return value is None or math.isfinite(value)
