"""Optimisers (AdamW / HybridAdam, LionW), parameter groups, and the warm-up + decay LR schedules."""

from __future__ import annotations

import math
from typing import Iterable, List

import torch
from torch.optim.lr_scheduler import LambdaLR


def parameter_groups(model: torch.nn.Module, weight_decay: float, no_decay_params: Iterable[torch.nn.Parameter] = ()) -> List[dict]:
    """Trainable parameters split into decayed (matrices) and not decayed (norms, biases, 1-D, and `no_decay_params`)."""
    exempt = {id(p) for p in no_decay_params}
    decay, no_decay, seen = [], [], set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:  # tied weights appear once
            continue
        seen.add(id(param))
        if param.ndim < 2 or name.endswith(".bias") or "norm" in name.lower() or id(param) in exempt:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


class LionW(torch.optim.Optimizer):
    """Lion (Chen et al. 2023) with decoupled weight decay.

    update = sign(beta1·m + (1 − beta1)·g);  p ← p·(1 − lr·wd) − lr·update;  m ← beta2·m + (1 − beta2)·g.
    Neither torch 2.5 nor Colossal-AI 0.5 ships Lion, hence this small class.
    """

    def __init__(self, params, lr: float = 1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError("lr must be positive")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["exp_avg"] = torch.zeros_like(param)
                exp_avg = state["exp_avg"]
                grad = param.grad
                if group["weight_decay"]:
                    param.mul_(1 - group["lr"] * group["weight_decay"])
                update = exp_avg.mul(beta1).add_(grad, alpha=1 - beta1).sign_()
                param.add_(update, alpha=-group["lr"])
                exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)
        return loss


def build_optimizer(optim, groups: List[dict]) -> torch.optim.Optimizer:
    """AdamW (HybridAdam when a GPU or a ZeRO/Gemini plugin is used), or LionW."""
    betas = tuple(optim.betas)
    if optim.optimizer == "lionw":
        return LionW(groups, lr=optim.lr, betas=betas, weight_decay=optim.weight_decay)
    if torch.cuda.is_available():
        from colossalai.nn.optimizer import HybridAdam

        return HybridAdam(groups, lr=optim.lr, betas=betas, eps=optim.eps, weight_decay=optim.weight_decay, adamw_mode=True)
    return torch.optim.AdamW(groups, lr=optim.lr, betas=betas, eps=optim.eps, weight_decay=optim.weight_decay)


class WarmupDecay:
    """LR multiplier at optimizer step s (0-based): linear warm-up, then cosine / wsd / constant.

    cosine: peak at s = warmup − 1, then 0.5·(1 + cos(π·progress)) from 1 down to `min_lr_ratio` at the
            last step (s = total_steps − 1).
    wsd:    warm-up, stable at the peak, then linear decay to `min_lr_ratio` over the last `decay_ratio` of the
            steps (warm-up–stable–decay, MiniCPM).
    `lr_scale` multiplies everything: the spike guard lowers it at each rollback. Being a callable object, its
    attributes travel in LambdaLR's state_dict, so a resumed run keeps total_steps and lr_scale.
    """

    def __init__(self, kind: str, total_steps: int, warmup_steps: int, min_lr_ratio: float, decay_ratio: float = 0.2):
        self.kind = kind
        self.total_steps = max(1, total_steps)
        self.warmup_steps = max(0, min(warmup_steps, self.total_steps))
        self.min_lr_ratio = min_lr_ratio
        self.decay_ratio = decay_ratio
        self.lr_scale = 1.0

    def __call__(self, step: int) -> float:
        return self.lr_scale * self.unscaled(step)

    def unscaled(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        last = self.total_steps - 1
        if self.kind == "constant":
            return 1.0
        if self.kind == "cosine":
            start = max(0, self.warmup_steps - 1)  # the peak step
            progress = min(1.0, max(0.0, (step - start) / max(1, last - start)))
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        decay_steps = max(1, round(self.decay_ratio * self.total_steps))
        decay_start = max(self.warmup_steps, self.total_steps - decay_steps)
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start + 1) / max(1, last - decay_start + 1))
        return 1.0 - (1 - self.min_lr_ratio) * progress


def build_scheduler(optim, optimizer, total_steps: int) -> LambdaLR:
    """torch's LambdaLR over WarmupDecay: Colossal-AI's CosineAnnealingWarmupLR has no final ratio, wsd or scale."""
    schedule = WarmupDecay(optim.lr_schedule, total_steps, optim.warmup_for(total_steps), optim.min_lr_ratio, optim.decay_ratio)
    return LambdaLR(optimizer, schedule)
