"""Language-adaptation techniques applied to the model before boosting: freeze modes, NEFTune, LoRA.

- `--freeze_non_embeds_params`: only the input embeddings and the LM head train.
- `--train_new_rows_only`: the layers freeze as above, and the run is one `new_rows` stage (stages.py): the
  old rows' gradients are zeroed after each backward and the new rows get their weight decay by hand, so
  AdamW/LionW leave old rows bit-for-bit unchanged (zero gradient, zero moments, no decay).
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
