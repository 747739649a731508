"""The README's one-node launch, `colossalai run --nproc_per_node N train.py ...` (no hostfile: Colossal-AI
starts torchrun here, static rendezvous on 127.0.0.1), trains like torchrun with the same processes."""

from __future__ import annotations

import subprocess

from tests.training.conftest import REPO_ROOT, VENV_BIN, assert_same_steps, base_args, environment, free_port, step_records


def test_colossalai_run_on_one_node_trains_like_torchrun(tiny_model_dir, packed_dataset, uninterrupted, tmp_path):
    save_dir = tmp_path / "save"
    command = [str(VENV_BIN / "colossalai"), "run", "--nproc_per_node", "2", "--master_port", str(free_port()),
               "train.py", *base_args(tiny_model_dir, packed_dataset, save_dir, stop_at_step=2)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert "127.0.0.1: success" in result.stdout
    records = step_records(save_dir / "log.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert_same_steps(records, uninterrupted / "log.jsonl")
