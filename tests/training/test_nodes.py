"""colossal_lang.training.nodes with 2 real processes over gloo (forked, no launcher)."""

from __future__ import annotations

import multiprocessing

from tests.training.conftest import free_port


def worker(rank: int, port: int, save_dirs: list, results) -> None:
    import torch.distributed as dist

    from colossal_lang.errors import InputError
    from colossal_lang.training import nodes

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    outcome = {"answer": nodes.decided_by_rank0(lambda: f"as rank {rank} sees it")}

    def refuse():
        raise InputError("checkpoint not found", "somewhere")

    try:
        nodes.decided_by_rank0(refuse)
    except InputError as error:
        outcome["refused"] = str(error)
    nodes.check_save_dir_shared(save_dirs[0])  # the same folder for both: passes
    try:
        nodes.check_save_dir_shared(save_dirs[rank], wait_s=0.1)  # a folder each
    except InputError as error:
        outcome["not_shared"] = str(error)
    results.put((rank, outcome))  # no destroy_process_group: with gloo it can wait forever for a peer that has exited


def test_every_rank_gets_rank_0s_decision_or_its_error(tmp_path):
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    port = free_port()
    save_dirs = [tmp_path / "rank-0", tmp_path / "rank-1"]
    processes = [context.Process(target=worker, args=(rank, port, save_dirs, results)) for rank in (0, 1)]
    for process in processes:
        process.start()
    try:
        outcomes = dict(results.get(timeout=60) for _ in processes)
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
    for rank in (0, 1):
        assert outcomes[rank]["answer"] == "as rank 0 sees it"
        assert outcomes[rank]["refused"] == "somewhere: checkpoint not found"
        assert "not shared by all nodes: rank 1 on" in outcomes[rank]["not_shared"]
    assert not list(tmp_path.rglob(".shared-check-*"))  # rank 0 removes its file
