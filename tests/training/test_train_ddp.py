"""train.py with 2 CPU workers over gloo (ddp plugin): exact resume after SIGKILL, 1-worker resume, final model."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import torch

from tests.training.conftest import (STEPS, REPO_ROOT, assert_same_steps, base_args, environment, read_log, run_training,
                                     step_records, torchrun_command)

def test_loss_falls_and_checkpoints_follow_the_layout(uninterrupted):
    records = step_records(uninterrupted / "log.jsonl")
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert records[-1]["loss"] < records[0]["loss"] - 0.5
    checkpoint = uninterrupted / "epoch-0_step-4"
    for part in ("modeling", "optimizer", "lr_scheduler", "tokenizer", "rng/rank-0.pt", "rng/rank-1.pt", "COMPLETE"):
        assert (checkpoint / part).exists(), part
    states = json.loads((checkpoint / "running_states.json").read_text())
    assert states["step"] == 4 and states["world_size"] == 2
    assert states["consumed_samples"] == 4 * 2 * 2  # steps x batch x workers
    assert states["config"]["plugin"] == "ddp"
    assert not list(uninterrupted.glob(".staging-*"))
    # Every step's global batch is distinct rows (the two workers never read the same row).
    for record in records:
        assert len(set(record["samples"])) == len(record["samples"]) == 4


def test_final_folder_is_a_plain_hugging_face_model(uninterrupted, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = AutoModelForCausalLM.from_pretrained(uninterrupted / "final")
    assert AutoTokenizer.from_pretrained(uninterrupted / "final").pad_token_id == 2
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    last = torch.load(uninterrupted / f"epoch-0_step-{STEPS}" / "modeling" / "pytorch_model-00001.bin", weights_only=True)
    final_state = final.state_dict()
    for name, tensor in last.items():
        assert torch.equal(final_state[name], tensor), name
    assert not torch.equal(final_state["model.layers.0.mlp.up_proj.weight"], start.state_dict()["model.layers.0.mlp.up_proj.weight"])


def test_sigkill_then_resume_reproduces_the_loss_sequence(uninterrupted, tiny_model_dir, packed_dataset, tmp_path):
    """SIGKILL mid-run, then SIGKILL mid-checkpoint, each time resume from `latest`: the losses (every launch's)
    match the uninterrupted run, and the half-written checkpoint is never used."""
    save_dir = tmp_path / "killed"
    args = base_args(tiny_model_dir, packed_dataset, save_dir)
    process = subprocess.Popen(torchrun_command(2, args), cwd=REPO_ROOT, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = save_dir / "log.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if log.exists() and any(r.get("step", 0) >= 3 for r in read_log(log)):
            break
        time.sleep(0.05)
    # SIGKILL the launcher and both workers at once (torchrun starts workers in sessions of their own).
    launcher = psutil.Process(process.pid)
    for proc in [launcher, *launcher.children(recursive=True)]:
        proc.send_signal(signal.SIGKILL)
    process.wait()
    killed_steps = [r["step"] for r in step_records(log)]
    assert killed_steps and killed_steps[-1] < STEPS, "the run ended before it could be killed"

    # Second launch: SIGKILLed while writing its first checkpoint (rank 0 dies after the model part).
    from colossal_lang.training.checkpoint_format import latest_checkpoint

    resume_step = int(latest_checkpoint(save_dir).name.split("step-")[1])
    kill_step = resume_step + 2
    crashed = run_training(2, base_args(tiny_model_dir, packed_dataset, save_dir, load_checkpoint="latest"),
                           check=False, faults=f"save_kill@{kill_step}")
    assert crashed.returncode != 0 and "resumed from" in crashed.stdout
    assert (save_dir / f".staging-epoch-0_step-{kill_step}" / "modeling").is_dir()
    assert not (save_dir / f"epoch-0_step-{kill_step}").exists()
    assert [r["step"] for r in step_records(log)][-1] == kill_step

    result = run_training(2, base_args(tiny_model_dir, packed_dataset, save_dir, load_checkpoint="latest"))
    assert f"resumed from {save_dir / f'epoch-0_step-{resume_step}'}" in result.stdout
    assert not (save_dir / f".staging-epoch-0_step-{kill_step}").exists()  # the half-written one was cleared
    records = step_records(log)
    assert records[-1]["step"] == STEPS and len(records) > STEPS  # some steps ran twice, after each resume
    assert_same_steps(records, uninterrupted / "log.jsonl")
    assert (save_dir / "final" / "config.json").is_file()


def test_resume_with_one_worker_continues_the_data_position(uninterrupted, tiny_model_dir, packed_dataset, tmp_path):
    """A 2-worker checkpoint resumed by 1 worker reads on from the same global sample position."""
    import shutil

    save_dir = tmp_path / "one-worker"
    save_dir.mkdir()
    shutil.copytree(uninterrupted / "epoch-0_step-4", save_dir / "epoch-0_step-4")
    run_training(1, base_args(tiny_model_dir, packed_dataset, save_dir, load_checkpoint="latest", stop_at_step=6))
    expected = {r["step"]: r for r in step_records(uninterrupted / "log.jsonl")}
    resumed = step_records(save_dir / "log.jsonl")
    # 1 worker: global batch 2 instead of 4, so its steps 5 and 6 read exactly the rows of the 2-worker step 5.
    assert [r["step"] for r in resumed] == [5, 6]
    assert sorted(resumed[0]["samples"] + resumed[1]["samples"]) == expected[5]["samples"]
    states = json.loads((save_dir / "epoch-0_step-6" / "running_states.json").read_text())
    assert states["consumed_samples"] == 16 + 2 * 2 and states["world_size"] == 1


def test_resume_of_a_checkpoint_from_before_buckets_keeps_its_data_order(tiny_model_dir, packed_dataset, tmp_path):
    """A checkpoint whose sampler state has no bucket_sizes (saved before bucket-ordered reading) on a two-part
    dataset: train.py finishes the epoch with the rest of the one permutation that run was walking."""
    save_dir = tmp_path / "legacy"
    run_training(1, base_args(tiny_model_dir, packed_dataset, save_dir, stop_at_step=2))
    states_path = save_dir / "epoch-0_step-2" / "running_states.json"
    states = json.loads(states_path.read_text())
    assert len(states["sampler"]["bucket_sizes"]) == 2
    del states["sampler"]["bucket_sizes"]
    states_path.write_text(json.dumps(states))
    (save_dir / "log.jsonl").unlink()
    run_training(1, base_args(tiny_model_dir, packed_dataset, save_dir, load_checkpoint="latest", stop_at_step=4))
    size, seed, consumed = states["sampler"]["dataset_size"], states["sampler"]["seed"], states["consumed_samples"]
    saved_order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    resumed = step_records(save_dir / "log.jsonl")
    assert [r["step"] for r in resumed] == [3, 4] and consumed == 4
    assert [sorted(r["samples"]) for r in resumed] == [sorted(saved_order[4:6]), sorted(saved_order[6:8])]
