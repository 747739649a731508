"""--stages: what learns in each stage, checked weight by weight at the stage boundaries; resume across a boundary."""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import base_args, run_many, step_records

NEW = 1000  # rows >= NEW count as the new tokens' rows of the 49,152-row tiny model
SPEC = "new_rows:2,embeddings:2,all"
EMBEDDINGS = ("model.embed_tokens.weight", "lm_head.weight")


@pytest.fixture(scope="module")
def untied_model_dir(tiny_model_dir, smollm2_tokenizer, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, tie_word_embeddings=False)
    model.lm_head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone() * 0.5)
    out = tmp_path_factory.mktemp("tiny-untied")
    model.save_pretrained(out)
    smollm2_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def staged_runs(tiny_model_dir, untied_model_dir, packed_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    common = dict(max_steps=6, save_interval=2, stages=SPEC, new_token_start=NEW, use_neft=False, warmup_steps=0,
                  lr_schedule="constant")
    plan = [
        base_args(tiny_model_dir, packed_dataset, root / "tied", **common),
        base_args(untied_model_dir, packed_dataset, root / "untied", **common),
        base_args(tiny_model_dir, packed_dataset, root / "resumed", stop_at_step=3, **common),
        base_args(tiny_model_dir, packed_dataset, root / "resumed", load_checkpoint="latest", **common),
        base_args(tiny_model_dir, packed_dataset, root / "refused_cover", **{**common, "stages": "new_rows:2,all:2"}),
        base_args(tiny_model_dir, packed_dataset, root / "refused_start", **{**common, "new_token_start": False}),
    ]
    result = run_many(plan)
    return root, result.stdout


def weights(folder) -> dict:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).state_dict()


def assert_stage_changes(before: dict, after: dict, kind: str) -> None:
    for name in before:
        if name in EMBEDDINGS:
            old_rows_equal = torch.equal(before[name][:NEW], after[name][:NEW])
            assert old_rows_equal == (kind == "new_rows"), (name, kind)
            assert not torch.equal(before[name][NEW:], after[name][NEW:]), (name, kind)
        else:
            assert torch.equal(before[name], after[name]) == (kind != "all"), (name, kind)


@pytest.mark.parametrize("model_name", ["tied", "untied"])
def test_each_stage_trains_only_its_parameters(staged_runs, tiny_model_dir, untied_model_dir, model_name):
    root, _ = staged_runs
    model_dir = tiny_model_dir if model_name == "tied" else untied_model_dir
    run_dir = root / model_name
    at = {0: weights(model_dir)}
    for step in (2, 4, 6):
        at[step] = weights(run_dir / f"epoch-0_step-{step}" / "modeling")
    assert_stage_changes(at[0], at[2], "new_rows")  # steps 1-2
    assert_stage_changes(at[2], at[4], "embeddings")  # steps 3-4
    assert_stage_changes(at[4], at[6], "all")  # steps 5-6
    final = weights(run_dir / "final")
    assert all(torch.equal(final[name], at[6][name]) for name in final)
    assert [r["stage"] for r in step_records(run_dir / "log.jsonl")] == ["new_rows"] * 2 + ["embeddings"] * 2 + ["all"] * 2


def test_resume_inside_a_stage_is_exact(staged_runs, tiny_model_dir):
    """Stopped after step 3 (inside the embeddings stage), resumed: steps 4-6 and the final weights as uninterrupted."""
    root, _ = staged_runs
    uninterrupted = {r["step"]: r for r in step_records(root / "tied" / "log.jsonl")}
    records = step_records(root / "resumed" / "log.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    for record in records:
        assert record["loss"] == uninterrupted[record["step"]]["loss"], record["step"]
        assert record["stage"] == uninterrupted[record["step"]]["stage"]
    final, expected = weights(root / "resumed" / "final"), weights(root / "tied" / "final")
    assert all(torch.equal(final[name], expected[name]) for name in final)


def test_stages_that_do_not_fit_the_run_are_refused(staged_runs):
    _, stdout = staged_runs
    assert "INPUT_ERROR 4: --stages covers 4 steps but the run has 6" in stdout
    assert "INPUT_ERROR 5: --stages new_rows (and --train_new_rows_only) need --new_token_start" in stdout


@pytest.mark.parametrize("spec, message", [
    ("new_rows:2,everything", "unknown stage 'everything'"),
    ("new_rows,all", "only the last stage may omit its steps"),
    ("new_rows:0,all", "needs a positive whole number of steps"),
])
def test_malformed_stage_specs_are_refused(spec, message):
    from colossal_lang.errors import InputError
    from colossal_lang.training.stages import parse_stages

    with pytest.raises(InputError, match=message):
        parse_stages(spec)


def test_stages_parse_into_step_ranges():
    from colossal_lang.training.stages import Stage, parse_stages, stage_at

    stages = parse_stages("new_rows:200,embeddings:300,all")
    assert stages == [Stage("new_rows", 1, 200), Stage("embeddings", 201, 500), Stage("all", 501, None)]
    assert [stage_at(stages, s).kind for s in (1, 200, 201, 500, 501, 10_000)] == \
        ["new_rows", "new_rows", "embeddings", "embeddings", "all", "all"]


def test_stages_are_refused_with_other_freeze_modes_and_sharded_plugins(tiny_model_dir, packed_dataset, tmp_path,
                                                                        monkeypatch):
    from colossal_lang.errors import InputError
    from colossal_lang.training import plugins
    from colossal_lang.training.flags import parse_train_args

    args = base_args(tiny_model_dir, packed_dataset, tmp_path, stages=SPEC, new_token_start=NEW)
    with pytest.raises(InputError, match="--stages decides what trains"):
        parse_train_args(args + ["--train_new_rows_only"])
    config = parse_train_args(args + ["--plugin", "zero2", "--mixed_precision", "bf16"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the check itself, past the CPU refusal
    with pytest.raises(InputError, match="--stages runs with --plugin ddp only"):
        plugins.check_plugin(config, 1)
