"""One optimizer step's forward/backward over its micro-batches, with the loss normalised per token.

Every micro-batch's loss is its sum of token losses divided by the number of loss tokens in the whole
global step (all micro-batches, all data-parallel ranks), times the data-parallel size because the
plugins average gradients over ranks. The gradient is then exactly that of the mean token loss of the
global batch, however the tokens fall into micro-batches (Colossal-LLaMA averaged per micro-batch).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.distributed as dist

from colossal_lang.errors import InputError
from colossal_lang.testing import faults
from colossal_lang.training import boosted
from colossal_lang.training.plugins import PluginTraits
from colossal_lang.training.losses import kl_to_reference_sums, loss_token_count, token_loss_sums


@dataclass
class StepContext:
    booster: object
    model: torch.nn.Module
    optimizer: object
    device: torch.device
    traits: PluginTraits
    autocast: object  # a callable returning a context manager
    dp_size: int
    dp_group: Optional[object]
    categories: List[str]
    reference: Optional[torch.nn.Module] = None
    kl_coef: float = 0.0
    kl_categories: Optional[set] = None
    original_vocab_size: int = 0
    pp_group: Optional[object] = None  # with pipeline: the loss lives on the last stage only
    num_microbatches: int = 1
    vocab_rows: int = 0  # embedding rows: a token id at or above them means data and model do not match


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}


def forward_backward(ctx: StepContext, micro_batches: List[dict], step: int, log_samples: bool = False) -> dict:
    """Run forward and backward on every micro-batch of global step `step`; return global sums (identical on every rank)."""
    inject_nan = faults.armed("nan_loss", step)  # (tests)
    num_categories = len(ctx.categories)
    category_index = {name: i for i, name in enumerate(ctx.categories)}
    local_tokens = sum(int(loss_token_count(mb["labels"])) for mb in micro_batches)
    largest_id = max(int(mb["input_ids"].max()) for mb in micro_batches)
    out_of_vocabulary = float(bool(ctx.vocab_rows) and largest_id >= ctx.vocab_rows)
    # [loss tokens, input tokens, ranks with out-of-vocabulary ids] summed over the data-parallel group first.
    counts = torch.tensor([local_tokens, sum(mb["input_ids"].numel() for mb in micro_batches), out_of_vocabulary],
                          dtype=torch.float64)
    if dist.is_initialized():
        counts = counts.to(ctx.device)
        dist.all_reduce(counts, group=ctx.dp_group)
        counts = counts.cpu()
    if counts[2] > 0:  # every rank stops together
        raise InputError(f"the data hold token ids at or above the model's {ctx.vocab_rows} embedding rows "
                         f"(this rank's largest: {largest_id}): was the dataset tokenized for another tokenizer?")
    global_tokens = max(1.0, counts[0].item())
    scale = ctx.dp_size / global_tokens

    # [loss sum, kl sum, per-category loss sums..., per-category token counts...]
    sums = torch.zeros(2 + 2 * num_categories, dtype=torch.float64)
    for index, micro_batch in enumerate(micro_batches):
        inputs = _to_device(micro_batch, ctx.device)
        labels = inputs.pop("labels")
        last = index == len(micro_batches) - 1
        sync = nullcontext() if last else boosted.no_sync(ctx.booster, ctx.model, ctx.optimizer, ctx.traits)
        with sync:
            if ctx.traits.pipeline:
                loss_sum = _pipeline_step(ctx, inputs, labels, scale)
                sums[0] += loss_sum
                continue
            with ctx.autocast():
                if ctx.traits.model_parallel:  # shardformer computes a (vocab-parallel) loss from labels
                    outputs = ctx.model(**inputs, labels=labels)
                    n = loss_token_count(labels)
                    loss_sum = outputs.loss.float() * n
                    row_sums, row_counts = None, None
                else:
                    logits = ctx.model(**inputs).logits
                    row_sums, row_counts = token_loss_sums(logits, labels)
                    loss_sum = row_sums.sum()
                loss = loss_sum * scale
                kl_sum = None
                if ctx.reference is not None and ctx.kl_coef > 0:
                    kl_rows = torch.tensor([ctx.kl_categories is None or c in ctx.kl_categories for c in micro_batch["categories"]],
                                           device=ctx.device)
                    if kl_rows.any():
                        with torch.no_grad():
                            reference_logits = ctx.reference(**inputs).logits
                        kl_sum = (kl_to_reference_sums(logits, reference_logits, labels, ctx.original_vocab_size) * kl_rows).sum()
                        loss = loss + ctx.kl_coef * kl_sum * scale
            if inject_nan:
                loss = loss * float("nan")
            ctx.booster.backward(loss, ctx.optimizer)
        sums[0] += loss_sum.detach().double().cpu() * (float("nan") if inject_nan else 1.0)
        if kl_sum is not None:
            sums[1] += kl_sum.detach().double().cpu()
        if row_sums is not None:
            for row, category in enumerate(micro_batch["categories"]):
                sums[2 + category_index[category]] += row_sums[row].detach().double().cpu()
                sums[2 + num_categories + category_index[category]] += row_counts[row].item()

    if dist.is_initialized():
        sums = sums.to(ctx.device)
        dist.all_reduce(sums, group=ctx.dp_group)
        if ctx.pp_group is not None:  # other stages hold zeros: every rank then judges (spike guard) the same loss
            dist.all_reduce(sums, group=ctx.pp_group)
        sums = sums.cpu()
    result = {"loss": (sums[0] / global_tokens).item(), "loss_tokens": int(counts[0]), "tokens": int(counts[1])}
    if log_samples:
        local = [i for mb in micro_batches for i in mb["indices"]]
        gathered = [None] * (dist.get_world_size(ctx.dp_group) if dist.is_initialized() else 1)
        if dist.is_initialized():
            dist.all_gather_object(gathered, local, group=ctx.dp_group)
        else:
            gathered = [local]
        result["samples"] = sorted(i for part in gathered for i in part)
    if ctx.reference is not None and ctx.kl_coef > 0:
        result["kl"] = (sums[1] / global_tokens).item()
    for i, name in enumerate(ctx.categories):
        tokens = sums[2 + num_categories + i].item()
        result[f"tokens/{name}"] = int(tokens)
        if tokens:
            result[f"loss/{name}"] = (sums[2 + i] / tokens).item()
    return result


def _pipeline_step(ctx: StepContext, inputs: dict, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """3d with --pp > 1: Colossal-AI's schedule runs forward and backward; the loss lives on the last stage."""
    # Position ids go to every stage (each applies rotary embeddings), as in the non-pipeline 3d path.
    batch = {"input_ids": inputs["input_ids"], "attention_mask": inputs.get("attention_mask"),
             "position_ids": inputs.get("position_ids"), "labels": labels}
    batch = {k: v for k, v in batch.items() if v is not None}

    def criterion(outputs, micro_inputs):
        # The schedule divides each micro-batch loss by the number of micro-batches; undo that, weigh per token.
        return outputs.loss * loss_token_count(micro_inputs["labels"]) * scale * ctx.num_microbatches

    output = ctx.booster.execute_pipeline(iter([batch]), ctx.model, criterion, ctx.optimizer, return_loss=True)
    loss = output["loss"]
    stage_manager = ctx.booster.plugin.stage_manager
    if stage_manager.is_last_stage() and loss is not None:
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
