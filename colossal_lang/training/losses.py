"""Token-level losses: per-row cross-entropy sums (normalised by the trainer per token) and KL to a reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def shifted(logits: torch.Tensor, labels: torch.Tensor):
    """Logits at position t predict labels at t + 1 (labels in the data are not shifted)."""
    return logits[:, :-1, :], labels[:, 1:]


def loss_token_count(labels: torch.Tensor) -> torch.Tensor:
    return (labels[:, 1:] != IGNORE_INDEX).sum()


def token_loss_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-row sum of token cross-entropies in fp32, per-row number of loss tokens)."""
    logits, targets = shifted(logits, labels)
    losses = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                             ignore_index=IGNORE_INDEX, reduction="none").view(targets.shape)
    return losses.sum(dim=1), (targets != IGNORE_INDEX).sum(dim=1)


def kl_to_reference_sums(logits: torch.Tensor, reference_logits: torch.Tensor, labels: torch.Tensor,
                         original_vocab_size: int) -> torch.Tensor:
    """Per-row sum over loss tokens of KL(reference ‖ model), both renormalised over the original vocabulary.

    Rows added to the vocabulary are left out on both sides, so the term only asks the model to keep its
    old distribution over the old tokens (Vikhr's replay regulariser) and never pushes new tokens down.
    """
    logits, targets = shifted(logits, labels)
    reference_logits = reference_logits[:, :-1, :]
    model_logp = F.log_softmax(logits[..., :original_vocab_size].float(), dim=-1)
    reference_logp = F.log_softmax(reference_logits[..., :original_vocab_size].float(), dim=-1)
    kl = (reference_logp.exp() * (reference_logp - model_logp)).sum(dim=-1)
    return (kl * (targets != IGNORE_INDEX)).sum(dim=1)
