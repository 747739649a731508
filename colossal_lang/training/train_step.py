"""One optimizer step, and the record of what happened in it (loss, gradient norm, the guard's verdict).

forward/backward over the micro-batches → clip (where the loop clips) → the spike guard judges loss and norm →
optimizer step, or the batch is skipped → the LR schedule moves on either way (data and step always advance).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from colossal_lang.training import boosted
from colossal_lang.training.spike_guard import OK, SpikeGuard
from colossal_lang.training.stages import StagedParameters
from colossal_lang.training.forward_backward import StepContext, clip_and_norm, forward_backward

FP16_OVERFLOW = "fp16_overflow"


@dataclass
class StepRecord:
    step: int  # the global step this was, counted from 1
    loss: float
    grad_norm: Optional[float]
    lr: float  # the LR the step ran with
    verdict: str  # ok, not_finite, spike (the guard's), fp16_overflow (the plugin skipped the step)
    stage: str = "all"  # --stages: what learned in this step (new_rows, embeddings, all)
    diverged: bool = False  # the plugin's step applied non-finite gradients: the weights must be rolled back
    stats: dict = field(default_factory=dict)  # forward_backward's global sums (tokens, per-category losses, ...)
    events: List[dict] = field(default_factory=list)  # for the step log, before the step's own line

    @property
    def skipped(self) -> bool:
        return self.verdict != OK or self.diverged


@dataclass(frozen=True)
class Optimization:
    """What a step needs beyond forward/backward: the guard, the schedule, clipping, and what learns when."""
    guard: SpikeGuard
    lr_scheduler: object
    grad_clip: float
    staged: Optional[StagedParameters] = None  # --stages / --train_new_rows_only: gradients masked per stage
    log_samples: bool = False


def train_step(ctx: StepContext, optimization: Optimization, micro_batches: List[dict], step: int) -> StepRecord:
    ctx.model.train()
    stats = forward_backward(ctx, micro_batches, step, log_samples=optimization.log_samples)
    staged = optimization.staged
    stage = staged.mask_gradients(step) if staged is not None else None
    grad_norm = clip_and_norm(ctx, optimization.grad_clip)
    lr = optimization.lr_scheduler.get_last_lr()[0]
    guard = optimization.guard
    record = StepRecord(step, stats["loss"], grad_norm, lr, guard.judge(step, stats["loss"], grad_norm),
                        stage=stage.kind if stage else "all", stats=stats)
    if record.verdict == OK:
        if stage is not None:
            staged.decay_embeddings(stage, lr)
        optimizer_step(ctx, record)
    else:
        if ctx.traits.amp_scaler:  # the skipped step still tells the loss scaler what it saw
            ctx.optimizer.scaler.update()
        record.events.append(guard.events[-1])
    boosted.reset_gradient_accumulation(ctx.optimizer)
    ctx.optimizer.zero_grad()
    optimization.lr_scheduler.step()
    return record


def optimizer_step(ctx: StepContext, record: StepRecord) -> None:
    """optimizer.step(); plugins that clip inside it report the norm, an fp16 overflow, or non-finite gradients."""
    if not ctx.traits.clips_gradients:
        ctx.optimizer.step()
        return
    record.grad_norm, overflow = boosted.plugin_optimizer_step(ctx.optimizer)
    if overflow:  # fp16: the plugin skipped the step itself and lowered the loss scale
        record.verdict = FP16_OVERFLOW
        record.events.append({"step": record.step, "event": FP16_OVERFLOW, "loss": record.loss})
    elif not boosted.finite(record.grad_norm):
        # A finite loss with inf/NaN gradients (bf16/fp32 plugins do not check): the step has already applied
        # them, so the weights must come back from the last checkpoint.
        record.diverged = True
        record.events.append({"step": record.step, "event": "not_finite_after_step", "loss": record.loss,
                              "grad_norm": repr(record.grad_norm)})
