"""One optimizer step's forward/backward over its micro-batches, with the loss normalised per token.

Every micro-batch's loss is its sum of token losses divided by the number of loss tokens in the whole
global step (all micro-batches, all data-parallel ranks), times the data-parallel size because the
plugins average gradients over ranks. The gradient is then exactly that of the mean token loss of the
global batch, however the tokens fall into micro-batches (Colossal-LLaMA averaged per micro-batch).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
import torch.distributed as dist

from colossal_lang.errors import InputError
from colossal_lang.testing import faults
from colossal_lang.training import boosted
from colossal_lang.training.losses import kl_to_reference_sums, loss_token_count, token_loss_sums
from colossal_lang.training.plugins import PluginTraits


@dataclass(frozen=True)
class Ranks:
    """How the processes share a step: data-parallel size and group, the pipeline group and its micro-batches."""
    dp_size: int
    dp_group: Optional[object] = None  # None: the default group (ddp, zero2, gemini)
    pp_group: Optional[object] = None  # with pipeline: the loss lives on the last stage only
    num_microbatches: int = 1


@dataclass(frozen=True)
class KLTerm:
    """--kl_coef: KL(reference || model) over the original vocabulary, on the rows of `categories` (None: all)."""
    reference: torch.nn.Module
    coef: float
    categories: Optional[frozenset]
    original_vocab_size: int


@dataclass(frozen=True)
class StepContext:
    """What a forward/backward needs: the boosted objects, the plugin's traits, the ranks, the loss's terms."""
    booster: object
    model: torch.nn.Module
    optimizer: object
    device: torch.device
    traits: PluginTraits
    autocast: Callable  # returns a context manager
    ranks: Ranks
    categories: List[str]
    vocab_rows: int  # embedding rows: a token id at or above them means data and model do not match
    kl: Optional[KLTerm] = None


@dataclass
class Counts:
    loss_tokens: float
    tokens: int


class LossSums:
    """[loss sum, kl sum, per-category loss sums..., per-category token counts...], float64 on the CPU."""

    def __init__(self, categories: List[str]):
        self.categories = categories
        self.index = {name: i for i, name in enumerate(categories)}
        self.values = torch.zeros(2 + 2 * len(categories), dtype=torch.float64)

    def add(self, loss_sum, kl_sum, row_sums, row_counts, row_categories, poisoned: bool) -> None:
        self.values[0] += loss_sum.detach().double().cpu() * (float("nan") if poisoned else 1.0)
        if kl_sum is not None:
            self.values[1] += kl_sum.detach().double().cpu()
        if row_sums is None:
            return
        offset = 2 + len(self.categories)
        rows = torch.tensor([self.index[category] for category in row_categories])  # one copy to the CPU, not per row
        self.values[2:offset].index_add_(0, rows, row_sums.detach().double().cpu())
        self.values[offset:].index_add_(0, rows, row_counts.detach().double().cpu())


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}


def all_reduced(values: torch.Tensor, ctx: StepContext, over_pipeline: bool = False) -> torch.Tensor:
    if not dist.is_initialized():
        return values
    values = values.to(ctx.device)
    dist.all_reduce(values, group=ctx.ranks.dp_group)
    if over_pipeline and ctx.ranks.pp_group is not None:  # other stages hold zeros: every rank judges the same loss
        dist.all_reduce(values, group=ctx.ranks.pp_group)
    return values.cpu()


def global_counts(ctx: StepContext, micro_batches: List[dict]) -> Counts:
    """Loss and input tokens of the global step; every rank stops together if any holds out-of-vocabulary ids."""
    largest_id = max(int(mb["input_ids"].max()) for mb in micro_batches)
    out_of_vocabulary = float(bool(ctx.vocab_rows) and largest_id >= ctx.vocab_rows)
    counts = all_reduced(torch.tensor([sum(int(loss_token_count(mb["labels"])) for mb in micro_batches),
                                       sum(mb["input_ids"].numel() for mb in micro_batches), out_of_vocabulary],
                                      dtype=torch.float64), ctx)
    if counts[2] > 0:
        raise InputError(f"the data hold token ids at or above the model's {ctx.vocab_rows} embedding rows "
                         f"(this rank's largest: {largest_id}): was the dataset tokenized for another tokenizer?")
    return Counts(loss_tokens=max(1.0, counts[0].item()), tokens=int(counts[1]))


def kl_sum(ctx: StepContext, inputs: dict, logits: torch.Tensor, labels: torch.Tensor,
           row_categories: List[str]) -> Optional[torch.Tensor]:
    """The KL term's sum over this micro-batch's loss tokens, on the rows whose category gets it (None: no rows)."""
    kl = ctx.kl
    rows = torch.tensor([kl.categories is None or c in kl.categories for c in row_categories], device=ctx.device)
    if not rows.any():
        return None
    with torch.no_grad():
        reference_logits = kl.reference(**inputs).logits
    return (kl_to_reference_sums(logits, reference_logits, labels, kl.original_vocab_size) * rows).sum()


def micro_batch_loss(ctx: StepContext, micro_batch: dict, scale: float):
    """(loss to backward, token-loss sum, kl sum, per-row loss sums, per-row token counts) of one micro-batch."""
    inputs = _to_device(micro_batch, ctx.device)
    labels = inputs.pop("labels")
    with ctx.autocast():
        if ctx.traits.model_parallel:  # shardformer computes a (vocab-parallel) loss from labels
            loss_sum = ctx.model(**inputs, labels=labels).loss.float() * loss_token_count(labels)
            return loss_sum * scale, loss_sum, None, None, None
        logits = ctx.model(**inputs).logits
        row_sums, row_counts = token_loss_sums(logits, labels)
        loss_sum = row_sums.sum()
        kl = kl_sum(ctx, inputs, logits, labels, micro_batch["categories"]) if ctx.kl is not None else None
        loss = loss_sum * scale + (ctx.kl.coef * kl * scale if kl is not None else 0.0)
    return loss, loss_sum, kl, row_sums, row_counts


def forward_backward(ctx: StepContext, micro_batches: List[dict], step: int, log_samples: bool = False) -> dict:
    """Run forward and backward on every micro-batch of global step `step`; return global sums (identical on every rank)."""
    poisoned = faults.armed("nan_loss", step)  # (tests)
    counts = global_counts(ctx, micro_batches)
    scale = ctx.ranks.dp_size / counts.loss_tokens
    sums = LossSums(ctx.categories)
    for index, micro_batch in enumerate(micro_batches):
        last = index == len(micro_batches) - 1
        with nullcontext() if last else boosted.no_sync(ctx.booster, ctx.model, ctx.optimizer, ctx.traits):
            if ctx.traits.pipeline:
                sums.values[0] += pipeline_forward_backward(ctx, micro_batch, scale)
                continue
            loss, loss_sum, kl, row_sums, row_counts = micro_batch_loss(ctx, micro_batch, scale)
            ctx.booster.backward(loss * float("nan") if poisoned else loss, ctx.optimizer)
        sums.add(loss_sum, kl, row_sums, row_counts, micro_batch["categories"], poisoned)
    totals = all_reduced(sums.values, ctx, over_pipeline=True)
    result = step_stats(ctx, totals, counts)
    if log_samples:
        result["samples"] = gathered_samples(ctx, micro_batches)
    return result


def step_stats(ctx: StepContext, totals: torch.Tensor, counts: Counts) -> dict:
    """The step's mean token loss, token counts, KL, and per-category losses and token counts."""
    result = {"loss": (totals[0] / counts.loss_tokens).item(), "loss_tokens": int(counts.loss_tokens),
              "tokens": counts.tokens}
    if ctx.kl is not None:
        result["kl"] = (totals[1] / counts.loss_tokens).item()
    offset = 2 + len(ctx.categories)
    for i, name in enumerate(ctx.categories):
        tokens = totals[offset + i].item()
        result[f"tokens/{name}"] = int(tokens)
        if tokens:
            result[f"loss/{name}"] = (totals[2 + i] / tokens).item()
    return result


def gathered_samples(ctx: StepContext, micro_batches: List[dict]) -> List[int]:
    """The dataset rows of the step on every data-parallel rank, sorted (--log_samples)."""
    local = [i for mb in micro_batches for i in mb["indices"]]
    if not dist.is_initialized():
        return sorted(local)
    gathered = [None] * dist.get_world_size(ctx.ranks.dp_group)
    dist.all_gather_object(gathered, local, group=ctx.ranks.dp_group)
    return sorted(i for part in gathered for i in part)


def pipeline_forward_backward(ctx: StepContext, micro_batch: dict, scale: float) -> torch.Tensor:
    """3d with --pp > 1: Colossal-AI's schedule runs forward and backward; the loss lives on the last stage."""
    inputs = _to_device(micro_batch, ctx.device)
    # Position ids go to every stage (each applies rotary embeddings), as in the non-pipeline 3d path.
    batch = {name: inputs[name] for name in ("input_ids", "attention_mask", "position_ids", "labels") if name in inputs}

    def criterion(outputs, micro_inputs):
        # The schedule divides each micro-batch loss by the number of micro-batches; undo that, weigh per token.
        return outputs.loss * loss_token_count(micro_inputs["labels"]) * scale * ctx.ranks.num_microbatches

    output = ctx.booster.execute_pipeline(iter([batch]), ctx.model, criterion, ctx.optimizer, return_loss=True)
    loss = output["loss"]
    if ctx.booster.plugin.stage_manager.is_last_stage() and loss is not None:
        return loss.detach().double().cpu() / scale
    return torch.zeros((), dtype=torch.float64)


def clip_and_norm(ctx: StepContext, max_norm: float) -> Optional[float]:
    """Plugins that do not clip inside optimizer.step() (ddp): clip all gradients here and return their global
    norm. The others: None here, and `boosted.plugin_optimizer_step` returns it."""
    if ctx.traits.clips_gradients:
        return None
    if ctx.traits.amp_scaler:
        ctx.optimizer.unscale_grad()
    params = [p for p in ctx.model.parameters() if p.requires_grad and p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    return float(norm)
