"""Language-adaptation techniques applied to the model before boosting: freeze modes, NEFTune, LoRA.

- `--freeze_non_embeds_params`: only the input embeddings and the LM head train.
- `--train_new_rows_only`: only the rows of new tokens (ids >= new_token_start) of the embeddings and head
  train. Gradients of the old rows are zeroed by a hook, and the embedding matrices sit in a group without
  weight decay, so AdamW/LionW leave old rows bit-for-bit unchanged (zero gradient, zero moments, no decay);
  `decay_new_rows` applies the decoupled weight decay to the new rows by hand.
- NEFTune (Jain et al. 2023): uniform noise of scale alpha/sqrt(L·d) on the input embeddings, training only.
"""

from __future__ import annotations

import math
from typing import List

import torch


def embedding_matrices(model) -> List[torch.nn.Parameter]:
    """The input embedding and the LM head weights, once each (tied models share one)."""
    found = []
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None and all(module.weight is not p for p in found):
            found.append(module.weight)
    return found


def ties_embeddings(model_config) -> bool:
    """Whether Hugging Face ties the LM head to the input embeddings for this config (PreTrainedModel.tie_weights)."""
    text_config = model_config.get_text_config(decoder=True) if hasattr(model_config, "get_text_config") else model_config
    return bool(getattr(text_config, "tie_word_embeddings", True))


def freeze_non_embeddings(model) -> None:
    keep = {id(p) for p in embedding_matrices(model)}
    for param in model.parameters():
        param.requires_grad_(id(param) in keep)


def train_new_rows_only(model, new_token_start: int) -> List[torch.nn.Parameter]:
    """Freeze all but the embedding/head rows >= new_token_start; returns the row-masked matrices."""
    freeze_non_embeddings(model)
    matrices = embedding_matrices(model)
    for weight in matrices:
        if not 0 < new_token_start <= weight.shape[0]:
            raise ValueError(f"new_token_start {new_token_start} outside the {weight.shape[0]} embedding rows")

        def zero_old_rows(grad, start=new_token_start):
            grad = grad.clone()
            grad[:start] = 0
            return grad

        weight.register_hook(zero_old_rows)
    return matrices


@torch.no_grad()
def decay_new_rows(matrices: List[torch.nn.Parameter], new_token_start: int, lr: float, weight_decay: float) -> None:
    """Decoupled weight decay on the trainable rows only (call right before optimizer.step)."""
    if weight_decay:
        for weight in matrices:
            weight[new_token_start:].mul_(1 - lr * weight_decay)


def enable_neftune(model, alpha: float):
    """Register NEFTune on the input embeddings; noise only in training mode. Returns the hook handle."""

    def add_noise(module, inputs, output):
        if not module.training:
            return output
        length, dim = output.shape[-2], output.shape[-1]
        scale = alpha / math.sqrt(length * dim)
        return output + torch.zeros_like(output).uniform_(-scale, scale)

    return model.get_input_embeddings().register_forward_hook(add_noise)


def lora_config(adaptation, vocabulary_grew: bool):
    """peft's LoraConfig from the adaptation group (config.AdaptationConfig)."""
    from peft import LoraConfig

    chosen = adaptation.lora_train_embeddings
    train_embeddings = vocabulary_grew if chosen is None else chosen
    return LoraConfig(
        task_type="CAUSAL_LM", r=adaptation.lora_rank, lora_alpha=adaptation.lora_alpha,
        lora_dropout=adaptation.lora_dropout, target_modules=list(adaptation.lora_target_modules),
        modules_to_save=["embed_tokens", "lm_head"] if train_embeddings else None,
    )


def count_trainable(model) -> tuple[int, int]:
    seen, trainable, total = set(), 0, 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total
