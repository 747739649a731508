"""Checkpoint discovery (incomplete ones ignored), flag parsing with --config, impossible combinations rejected."""

from __future__ import annotations

import json

import pytest

from colossal_lang.errors import InputError
from colossal_lang.training import checkpoint_format as checkpoint
from colossal_lang.training.flags import parse_train_args
from colossal_lang.training.plugins import check_plugin


def test_latest_ignores_incomplete_and_staging_folders(tmp_path):
    for step in (2, 4, 10):
        (tmp_path / f"epoch-0_step-{step}").mkdir()
        (tmp_path / f"epoch-0_step-{step}" / "running_states.json").write_text("{}")
    for step in (2, 4):
        (tmp_path / f"epoch-0_step-{step}" / checkpoint.COMPLETE).write_text("")
    (tmp_path / ".staging-epoch-1_step-12").mkdir()
    assert checkpoint.latest_checkpoint(tmp_path).name == "epoch-0_step-4"  # step 10 never completed
    with pytest.raises(InputError, match="incomplete"):
        checkpoint.resolve_load_path(str(tmp_path / "epoch-0_step-10"), tmp_path)
    checkpoint.clear_staging(tmp_path)
    assert not (tmp_path / ".staging-epoch-1_step-12").exists()
    assert checkpoint.resolve_load_path("latest", tmp_path / "nothing-yet") is None


def test_config_file_sets_flags_and_the_command_line_overrides(tiny_model_dir, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(f"pretrained: {tiny_model_dir}\ndataset: [a, b]\nlr: 0.001\nbatch_size: 8\noptimizer: lionw\n")
    config = parse_train_args(["--config", str(config), "--batch_size", "4"])
    assert config.optim.lr == 0.001 and config.data.batch_size == 4 and config.data.dataset == ["a", "b"]
    assert config.optim.optimizer == "lionw" and config.model.tokenizer_dir == str(tiny_model_dir)


@pytest.mark.parametrize("flags, message", [
    (["--plugin", "gemini"], "needs CUDA"),
    (["--plugin", "zero2"], "needs CUDA"),
    (["--mixed_precision", "fp16"], "fp16 needs CUDA"),
    (["--tp", "2"], "need --plugin 3d"),
    (["--freeze_non_embeds_params", "--train_new_rows_only"], "choose one"),
    (["--use_flash_attn"], "flash-attn"),
    (["--use_flash_attn", "--mixed_precision", "fp32"], "needs --mixed_precision bf16 or fp16"),
    (["--batch_size", "0"], "at least 1"),
])
def test_impossible_combinations_are_rejected_before_work(tiny_model_dir, flags, message):
    with pytest.raises(InputError, match=message):
        args = parse_train_args(["--pretrained", str(tiny_model_dir), "--dataset", "x", *flags])
        check_plugin(args, world_size=2)


def test_tp_must_divide_the_heads(tiny_model_dir, monkeypatch):
    from transformers import AutoConfig

    import colossal_lang.training.plugins as plugins

    monkeypatch.setattr(plugins.torch.cuda, "is_available", lambda: True)  # judge the shape, not the device
    args = parse_train_args(["--pretrained", str(tiny_model_dir), "--dataset", "x", "--plugin", "3d", "--tp", "3"])
    with pytest.raises(InputError, match="does not divide"):
        check_plugin(args, world_size=4, model_config=AutoConfig.from_pretrained(tiny_model_dir))
    with pytest.raises(InputError, match="must divide the attention heads"):
        check_plugin(args, world_size=6, model_config=AutoConfig.from_pretrained(tiny_model_dir))


def test_3d_layouts_accepted_and_refused(tiny_model_dir, monkeypatch):
    """split_gather runs SP inside the TP group (no ranks of its own), all_to_all needs --sp ranks more;
    no LoRA (its merge needs the whole unsharded model); ZeRO inside 3d needs half precision (Colossal-AI asserts it)."""
    from transformers import AutoConfig

    import colossal_lang.training.plugins as plugins

    monkeypatch.setattr(plugins.torch.cuda, "is_available", lambda: True)
    model_config = AutoConfig.from_pretrained(tiny_model_dir)

    def check(world_size, *flags):
        args = parse_train_args(["--pretrained", str(tiny_model_dir), "--dataset", "x", "--plugin", "3d", *flags])
        check_plugin(args, world_size=world_size, model_config=model_config)

    check(2, "--tp", "2", "--sp", "2", "--sp_mode", "split_gather")  # 2 GPUs: TP 2 with SP over the same 2 ranks
    check(4, "--sp", "2", "--sp_mode", "all_to_all")
    with pytest.raises(InputError, match="= 2 does not divide 3"):
        check(3, "--sp", "2", "--sp_mode", "all_to_all")
    with pytest.raises(InputError, match="LoRA runs with --plugin ddp, zero2 or zero2_cpu"):
        check(2, "--lora_rank", "4")
    with pytest.raises(InputError, match="fp16 or bf16"):
        check(2, "--zero_stage", "1", "--mixed_precision", "fp32")
    # The 1F1B schedule asserts at least one micro-batch per stage (one_f_one_b.py:93-95).
    check(2, "--pp", "2", "--batch_size", "4", "--microbatch_size", "2")
    with pytest.raises(InputError, match="1 micro-batches, fewer than the 2 pipeline stages"):
        check(2, "--pp", "2", "--batch_size", "2", "--microbatch_size", "2")
    # all_to_all splits heads over sp, then tp: 2 key/value heads cannot go over 2 x 2.
    with pytest.raises(InputError, match=r"--tp 2 x --sp 2 \(all_to_all\) = 4 must divide"):
        check(4, "--tp", "2", "--sp", "2", "--sp_mode", "all_to_all")
    # Ring attention is flash attention (the plugin switches it on); flash-attn is not installed here.
    with pytest.raises(InputError, match="ring_attn runs on flash attention"):
        check(2, "--sp", "2", "--sp_mode", "ring_attn")


def test_sequence_parallel_padding_multiple(tiny_model_dir):
    from colossal_lang.training.plugins import sequence_multiple

    def multiple(*flags):
        return sequence_multiple(parse_train_args(["--pretrained", str(tiny_model_dir), "--dataset", "x", *flags]).parallel)

    assert multiple() == 1
    assert multiple("--plugin", "3d", "--tp", "4", "--sp", "4") == 4  # split_gather: over the TP ranks
    assert multiple("--plugin", "3d", "--sp", "3", "--sp_mode", "all_to_all") == 3
    assert multiple("--plugin", "3d", "--sp", "2", "--sp_mode", "ring_attn") == 4  # zigzag: 2 chunks per rank


def test_cli_reports_bad_input_in_one_line(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    from tests.training.conftest import REPO_ROOT, environment

    result = subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), "--pretrained", str(tiny_model_dir),
                             "--dataset", str(tmp_path), "--plugin", "gemini"],
                            cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "needs CUDA" in result.stderr and "Traceback" not in result.stderr


def test_save_failure_leaves_the_previous_checkpoint_usable(uninterrupted, tiny_model_dir, packed_dataset, tmp_path):
    """A save that dies like a full disk: no folder looks complete, and resuming uses the one before."""
    import shutil

    from tests.training.conftest import base_args, run_training

    save_dir = tmp_path / "disk-full"
    save_dir.mkdir()
    shutil.copytree(uninterrupted / "epoch-0_step-4", save_dir / "epoch-0_step-4")
    failed = run_training(1, base_args(tiny_model_dir, packed_dataset, save_dir, load_checkpoint="latest"),
                          check=False, faults="save_disk_full@6")
    assert failed.returncode != 0 and "No space left on device" in failed.stderr + failed.stdout
    assert (save_dir / ".staging-epoch-0_step-6").exists() and not (save_dir / "epoch-0_step-6").exists()
    assert checkpoint.latest_checkpoint(save_dir).name == "epoch-0_step-4"
    states = json.loads((save_dir / "epoch-0_step-4" / "running_states.json").read_text())
    assert states["step"] == 4
