"""Schedules at chosen steps, LionW against a hand-computed step, parameter groups, per-token losses and KL."""

from __future__ import annotations

import math

import pytest
import torch

from colossal_lang.training.config import OptimConfig
from colossal_lang.training.losses import kl_to_reference_sums, token_loss_sums
from colossal_lang.training.optim import LionW, WarmupDecay, build_scheduler, parameter_groups


def test_cosine_schedule_values():
    schedule = WarmupDecay("cosine", total_steps=101, warmup_steps=10, min_lr_ratio=0.1)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(4) == pytest.approx(0.5)
    assert schedule(9) == pytest.approx(1.0)  # peak at the last warm-up step
    middle = 9 + (100 - 9) / 2
    assert schedule(middle) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule(100) == pytest.approx(0.1)  # the last step trains at exactly min_lr_ratio x peak
    assert schedule(30) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 21 / 91)))


def test_wsd_schedule_values():
    schedule = WarmupDecay("wsd", total_steps=100, warmup_steps=5, min_lr_ratio=0.1, decay_ratio=0.2)
    assert [schedule(s) for s in (0, 4)] == pytest.approx([0.2, 1.0])
    assert schedule(50) == 1.0 and schedule(79) == 1.0  # stable until the last 20 steps
    assert schedule(80) == pytest.approx(1 - 0.9 / 20)
    assert schedule(99) == pytest.approx(0.1)


def test_scheduler_lr_and_scale_survive_state_dict():
    param = torch.nn.Parameter(torch.zeros(2))
    args = OptimConfig(warmup_steps=2, lr_schedule="cosine", min_lr_ratio=0.1, decay_ratio=0.2)
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = build_scheduler(args, optimizer, total_steps=10)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    scheduler.lr_lambdas[0].lr_scale = 0.5
    state = scheduler.state_dict()
    fresh_optimizer = torch.optim.SGD([param], lr=1.0)
    fresh = build_scheduler(args, fresh_optimizer, total_steps=99)
    fresh.load_state_dict(state)
    assert fresh.lr_lambdas[0].total_steps == 10 and fresh.lr_lambdas[0].lr_scale == 0.5
    fresh.step()
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * WarmupDecay("cosine", 10, 2, 0.1)(5))


def test_lionw_matches_a_hand_computed_step():
    torch.manual_seed(0)
    weight = torch.randn(4, 3)
    grads = [torch.randn(4, 3), torch.randn(4, 3)]
    param = torch.nn.Parameter(weight.clone())
    optimizer = LionW([param], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    expected, momentum = weight.clone(), torch.zeros(4, 3)
    for grad in grads:
        param.grad = grad.clone()
        optimizer.step()
        expected = expected * (1 - 1e-2 * 0.1) - 1e-2 * torch.sign(0.9 * momentum + 0.1 * grad)
        momentum = 0.95 * momentum + 0.05 * grad
    assert torch.allclose(param.detach(), expected, atol=1e-7)
    assert torch.allclose(optimizer.state[param]["exp_avg"], momentum)


def test_no_weight_decay_on_norms_biases_and_exempt_rows(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    embedding = model.get_input_embeddings().weight
    groups = parameter_groups(model, 0.1, no_decay_params=[embedding])
    decayed = {id(p) for p in groups[0]["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert all("norm" not in names[i] for i in decayed)
    assert id(embedding) not in decayed
    assert any("q_proj" in names[i] for i in decayed)
    total = sum(len(g["params"]) for g in groups)
    assert total == len({id(p) for p in model.parameters()})  # tied weights counted once


def test_token_loss_sums_shift_and_ignore():
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[1, 2, 3, 4], [5, -100, 6, -100]])
    sums, counts = token_loss_sums(logits, labels)
    assert counts.tolist() == [3, 1]
    manual = torch.nn.functional.cross_entropy(logits[1, 1], torch.tensor(6))
    assert sums[1].item() == pytest.approx(manual.item(), rel=1e-6)


def test_kl_is_zero_against_itself_and_ignores_new_rows():
    logits = torch.randn(1, 5, 10)
    labels = torch.tensor([[1, 2, 3, -100, 4]])
    assert torch.all(kl_to_reference_sums(logits, logits.clone(), labels, 8) == 0)
    changed = logits.clone()
    changed[..., 8:] += 5.0  # only the new rows differ: no penalty over the original vocabulary
    assert torch.allclose(kl_to_reference_sums(changed, logits, labels, 8), torch.zeros(1), atol=1e-6)
    changed[..., 0] += 1.0
    assert kl_to_reference_sums(changed, logits, labels, 8).item() > 0


def test_mfu_flops_per_token_and_peak_table(monkeypatch):
    """PaLM's 6·N + 12·L·d·T with the input embedding out of N unless it is tied (docs/training.md), and the peak
    FLOP/s looked up by device name and precision."""
    from transformers import LlamaConfig

    from colossal_lang.training import metrics

    tied = LlamaConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, tie_word_embeddings=True)
    untied = LlamaConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, tie_word_embeddings=False)
    assert metrics.flops_per_token(tied, 128, 500_000) == 6 * 500_000 + 12 * 2 * 64 * 128
    assert metrics.flops_per_token(untied, 128, 564_000) == 6 * (564_000 - 64_000) + 12 * 2 * 64 * 128

    monkeypatch.setattr(metrics.torch.cuda, "is_available", lambda: True)
    for name, precision, peak in [("NVIDIA H100 80GB HBM3", "bf16", 989e12), ("NVIDIA H100 80GB HBM3", "fp32", 494e12),
                                  ("NVIDIA H100 PCIe", "fp16", 756e12), ("NVIDIA H200", "bf16", 989e12),
                                  ("NVIDIA A100-SXM4-80GB", "bf16", 312e12), ("Some Other GPU", "bf16", None)]:
        monkeypatch.setattr(metrics.torch.cuda, "get_device_name", lambda *a, n=name: n)
        assert metrics.peak_flops_per_device(precision) == peak, (name, precision)
    monkeypatch.setattr(metrics.torch.cuda, "is_available", lambda: False)
    assert metrics.peak_flops_per_device("bf16") is None  # no MFU on CPU
