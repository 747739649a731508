"""Two "nodes" of one CPU process each on this machine, launched as on a cluster: two torchrun invocations
(--nnodes 2, one per node rank), and `colossalai run --hostfile` with two local host entries (run without ssh).

Each node's only process has LOCAL_RANK 0, so anything keyed on the local rank instead of the global one would
write from both nodes; record_writes.py notes what each process changes in the shared save_dir.
"""

from __future__ import annotations

import json
import subprocess

import psutil
import pytest

from tests.training.conftest import (REPO_ROOT, STEPS, VENV_BIN, assert_same_steps, base_args, environment, free_port,
                                     step_records)

RECORD_WRITES = REPO_ROOT / "tests" / "training" / "record_writes.py"


def node_command(node_rank: int, rendezvous: list, script_args: list) -> list:
    return [str(VENV_BIN / "torchrun"), "--nnodes=2", f"--node_rank={node_rank}", "--nproc_per_node=1", *rendezvous,
            *map(str, script_args)]


def run_together(commands: list, logs, timeout: int = 180) -> list:
    """Start every command at once (one per node), wait for all; [(returncode, stdout, stderr)] in order."""
    processes = []
    for index, command in enumerate(commands):
        out, err = open(logs / f"node-{index}.out", "w"), open(logs / f"node-{index}.err", "w")
        processes.append((subprocess.Popen(command, cwd=REPO_ROOT, env=environment(), stdout=out, stderr=err), out, err))
    try:
        for process, out, err in processes:
            process.wait(timeout=timeout)
    finally:
        for process, out, err in processes:
            if process.poll() is None:  # timed out: the launcher and its workers (each in a session of its own)
                parent = psutil.Process(process.pid)
                for proc in [parent, *parent.children(recursive=True)]:
                    proc.kill()
                process.wait()
            out.close()
            err.close()
    return [(process.returncode, (logs / f"node-{i}.out").read_text(), (logs / f"node-{i}.err").read_text())
            for i, (process, _, _) in enumerate(processes)]


def read_writes(report_dir) -> dict:
    return {record["rank"]: record for record in
            (json.loads(path.read_text()) for path in sorted(report_dir.glob("rank-*.json")))}


@pytest.fixture(scope="module")
def two_nodes(tiny_model_dir, packed_dataset, tmp_path_factory):
    """The reference run's config on 2 nodes x 1 process, c10d rendezvous, one save_dir for both nodes."""
    root = tmp_path_factory.mktemp("two-nodes")
    save_dir, reports = root / "save", root / "writes"
    args = base_args(tiny_model_dir, packed_dataset, save_dir, tensorboard_dir=save_dir / "tensorboard",
                     config_file=save_dir / "config.json")
    rendezvous = ["--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{free_port()}"]
    script = [RECORD_WRITES, reports, save_dir, *args]
    results = run_together([node_command(rank, rendezvous, script) for rank in (0, 1)], root)
    for returncode, stdout, stderr in results:
        assert returncode == 0, f"{stdout[-3000:]}\n{stderr[-6000:]}"
    return save_dir, reports


def test_two_nodes_train_exactly_like_one_node_with_two_processes(two_nodes, uninterrupted):
    save_dir, _ = two_nodes
    records = step_records(save_dir / "log.jsonl")
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert_same_steps(records, uninterrupted / "log.jsonl")
    states = json.loads((save_dir / f"epoch-0_step-{STEPS}" / "running_states.json").read_text())
    assert states["world_size"] == 2 and states["consumed_samples"] == STEPS * 2 * 2
    assert {p.name for p in (save_dir / f"epoch-0_step-{STEPS}" / "rng").iterdir()} == {"rank-0.pt", "rank-1.pt"}
    assert (save_dir / "final" / "model.safetensors").is_file()
    assert not list(save_dir.glob(".staging-*")) and not list(save_dir.glob(".shared-check-*"))


def test_only_global_rank_0_writes_to_the_shared_save_dir(two_nodes):
    save_dir, reports = two_nodes
    writes = read_writes(reports)
    assert sorted(writes) == [0, 1]
    assert {(w["group_rank"], w["local_rank"]) for w in writes.values()} == {(0, 0), (1, 0)}  # one per node
    # Rank 1 writes its own RNG state into each staging folder, and nothing else.
    steps = range(2, STEPS + 1, 2)
    assert writes[1]["touched"] == sorted(f".staging-epoch-0_step-{s}/rng/rank-1.pt" for s in steps)
    written = set(writes[0]["touched"])
    assert {"log.jsonl", "config.json", "final", ".staging-final/model.safetensors"} <= written
    assert any(name.startswith("tensorboard/events.out.tfevents") for name in written)
    for step in steps:
        staging = f".staging-epoch-0_step-{step}"
        assert {f"epoch-0_step-{step}", f"{staging}/COMPLETE", f"{staging}/rng/rank-0.pt",
                f"{staging}/optimizer/optimizer.bin", f"{staging}/modeling/pytorch_model-00001.bin"} <= written


def test_colossalai_run_hostfile_of_two_local_hosts(tiny_model_dir, packed_dataset, uninterrupted, tmp_path):
    """localhost and 127.0.0.1 are two hosts to the launcher, both run here without ssh: node ranks 0 and 1."""
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost\n127.0.0.1\n")
    save_dir, reports = tmp_path / "save", tmp_path / "writes"
    args = base_args(tiny_model_dir, packed_dataset, save_dir, stop_at_step=2)
    command = [str(VENV_BIN / "colossalai"), "run", "--nproc_per_node", "1", "--hostfile", str(hostfile),
               "--master_port", str(free_port()), str(RECORD_WRITES), str(reports), str(save_dir), *map(str, args)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert "localhost: success" in result.stdout and "127.0.0.1: success" in result.stdout
    writes = read_writes(reports)
    assert {(rank, w["group_rank"], w["local_rank"]) for rank, w in writes.items()} == {(0, 0, 0), (1, 1, 0)}
    assert writes[1]["touched"] == [".staging-epoch-0_step-2/rng/rank-1.pt"]
    records = step_records(save_dir / "log.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert_same_steps(records, uninterrupted / "log.jsonl")


def test_nodes_without_a_shared_save_dir_stop_at_once(tiny_model_dir, packed_dataset, tmp_path):
    """Each node with a save_dir of its own (as if not on a shared filesystem): both stop before training."""
    rendezvous = ["--master_addr=127.0.0.1", f"--master_port={free_port()}"]  # static rendezvous this time
    commands = [node_command(rank, rendezvous, [REPO_ROOT / "train.py",
                                                *base_args(tiny_model_dir, packed_dataset, tmp_path / f"node-{rank}")])
                for rank in (0, 1)]
    results = run_together(commands, tmp_path, timeout=120)
    for returncode, stdout, stderr in results:
        assert returncode != 0
        assert "error: " in stderr and "--save_dir is not shared by all nodes: rank 1 on" in stderr
        assert "plugin ddp" not in stdout  # stopped before the model was built
    assert not (tmp_path / "node-0" / "log.jsonl").exists()
