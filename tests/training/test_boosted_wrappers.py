"""Reaching through Colossal-AI 0.5.0's Booster wrappers, checked against the real plugins on CPU (one gloo process).

ddp + fp16 nests TorchDDPModel inside TorchAMPModule: the plugin's own no_sync and unwrap(unwrap_peft=False)
fail on it; 3d + ZeRO-2 claims no_sync support but asserts against it.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from colossal_lang.training import boosted


@pytest.fixture
def process_group(monkeypatch):
    import torch.distributed as dist

    from tests.training.conftest import free_port

    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def fp16_ddp(model):
    from colossalai.booster import Booster
    from colossalai.booster.plugin import TorchDDPPlugin

    booster = Booster(plugin=TorchDDPPlugin(broadcast_buffers=False, find_unused_parameters=True), mixed_precision="fp16")
    return booster, model


def test_ddp_fp16_accumulation_gets_the_inner_ddp_no_sync(process_group, tiny_model_dir):
    booster, model = fp16_ddp(tiny_model(tiny_model_dir))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GradScaler without CUDA disables itself
        model, optimizer, *_ = booster.boost(model, optimizer)
    with pytest.raises(AssertionError, match="not boosted by TorchDDPPlugin"):  # what step.py called before
        booster.no_sync(model, optimizer)
    ddp = boosted.innermost_wrapper(model).module  # torch DistributedDataParallel
    assert isinstance(ddp, torch.nn.parallel.DistributedDataParallel)
    with boosted.no_sync(booster, model, optimizer, traits("ddp", "fp16")):
        assert ddp.require_backward_grad_sync is False
    assert ddp.require_backward_grad_sync is True


def traits(plugin: str, precision: str, zero_stage: int = 0, supports_no_sync: bool = True):
    """The traits make_plugin returns with the plugin, from the settings alone."""
    from colossal_lang.training.config import TrainConfig
    from colossal_lang.training.plugins import plugin_traits

    config = TrainConfig.from_flat({"plugin": plugin, "mixed_precision": precision, "zero_stage": zero_stage})
    return plugin_traits(config, supports_no_sync=supports_no_sync)


def test_ddp_fp16_lora_unwraps_to_the_peft_model_for_the_merge(process_group, tiny_model_dir):
    from peft import PeftModel

    booster, model = fp16_ddp(tiny_model(tiny_model_dir))
    from colossal_lang.training.adaptation import lora_config
    from colossal_lang.training.config import AdaptationConfig

    model = booster.enable_lora(model, lora_config=lora_config(AdaptationConfig(lora_rank=2), vocabulary_grew=False))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, optimizer, *_ = booster.boost(model, optimizer)
    assert not isinstance(model.unwrap(unwrap_peft=False), PeftModel)  # what save_final_model used before
    module = boosted.user_module(model)
    assert isinstance(module, PeftModel)
    assert "lora_A" not in "".join(module.merge_and_unload().state_dict())


def test_3d_zero2_never_enters_no_sync(process_group):
    from colossalai.booster import Booster
    from colossalai.booster.plugin import HybridParallelPlugin

    booster = Booster(plugin=HybridParallelPlugin(tp_size=1, pp_size=1, zero_stage=2, precision="bf16"))
    assert booster.plugin.support_no_sync()  # it says yes ...
    with pytest.raises(AssertionError, match="ZERO2 is not compatible with no_sync"):
        booster.no_sync(None, None)  # ... and refuses
    supports = booster.plugin.support_no_sync()
    assert not traits("3d", "bf16", zero_stage=2, supports_no_sync=supports).no_sync
    assert traits("3d", "bf16", zero_stage=1, supports_no_sync=supports).no_sync
    assert isinstance(boosted.no_sync(booster, None, None, traits("3d", "bf16", zero_stage=2)), type(boosted.nullcontext()))
