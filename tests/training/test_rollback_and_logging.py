"""Repeated loss-spike rollbacks in one run (the LR scale after each), and the step log's cadence."""

from __future__ import annotations

import pytest

from tests.training.conftest import base_args, read_log, run_many, step_records

LR = 1e-2


@pytest.fixture(scope="module")
def rollbacks(tiny_model_dir, packed_dataset, tmp_path_factory):
    """Every step after two judged ones is a spike (factor 0.5) and each spike rolls back (--spike_rollback_after 1);
    checkpoints every 2 steps, so rollbacks 1-2 return to the same checkpoint and 3-4 to the next one."""
    save_dir = tmp_path_factory.mktemp("rollbacks")
    run_many([base_args(tiny_model_dir, packed_dataset, save_dir, max_steps=6, save_interval=2, lr=LR,
                        spike_factor=0.5, spike_min_history=2, spike_rollback_after=1, spike_lr_factor=0.5,
                        lr_schedule="constant", warmup_steps=0, log_interval=4, use_neft=False)])
    return save_dir


def test_the_lr_scale_compounds_over_rollbacks_from_one_checkpoint(rollbacks):
    events = [r for r in read_log(rollbacks / "log.jsonl") if r.get("event") == "rollback"]
    assert [(e["step"], e["lr_scale"]) for e in events] == [(3, 0.5), (4, 0.25), (5, 0.125), (6, 0.0625)]
    # Rollbacks 1 and 2 both went back to step 2's checkpoint, whose schedule holds scale 1.0: the second
    # still halves the scale in force (0.5 -> 0.25) instead of starting again from the checkpoint's.
    assert [e["to"].rsplit("/", 1)[-1] for e in events] == ["epoch-0_step-2", "epoch-0_step-2",
                                                            "epoch-0_step-4", "epoch-0_step-4"]
    records = {r["step"]: r for r in step_records(rollbacks / "log.jsonl")}
    assert [records[step]["skipped"] for step in range(1, 7)] == [False, False, True, True, True, True]
    for step, scale in ((4, 0.5), (5, 0.25), (6, 0.125)):
        assert records[step]["lr"] == pytest.approx(LR * scale)


def test_the_step_log_has_every_step_whatever_the_log_interval(rollbacks):
    assert [r["step"] for r in step_records(rollbacks / "log.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_log_interval_zero_is_refused_in_one_line(tiny_model_dir, packed_dataset, tmp_path):
    from colossal_lang.errors import InputError
    from colossal_lang.training.flags import parse_train_args

    with pytest.raises(InputError, match="--log_interval must be at least 1"):
        parse_train_args(base_args(tiny_model_dir, packed_dataset, tmp_path, log_interval=0))
