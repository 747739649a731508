"""compare: table rows from real models, markdown and PNGs written, tensorboard scalars read back exactly."""

from __future__ import annotations

import json

import pytest

from colossal_lang.errors import InputError
from colossal_lang.evaluation.compare import (
    main,
    parse_model_spec,
    plot_training_curves,
    read_loss_log,
    read_scalars,
    to_markdown,
    training_runs,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_events(log_dir, scalars):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    for tag, points in scalars.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()


def test_read_scalars_and_plot_training_curves(tmp_path):
    logs = tmp_path / "tb"
    write_events(logs / "run-a", {"train/loss": [(1, 3.5), (2, 3.0), (3, 2.25)], "train/lr": [(1, 1e-4), (2, 2e-4)]})
    write_events(logs / "run-b", {"train/loss": [(1, 4.0), (5, 2.5)]})
    runs = read_scalars(logs)
    assert runs["run-a"]["train/loss"] == [(1, 3.5), (2, 3.0), (3, 2.25)]
    assert [step for step, _ in runs["run-a"]["train/lr"]] == [1, 2]
    assert runs["run-a"]["train/lr"][1][1] == pytest.approx(2e-4)
    assert runs["run-b"] == {"train/loss": [(1, 4.0), (5, 2.5)]}
    png = tmp_path / "curves.png"
    plot_training_curves(logs, png)
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no tensorboard event files"):
        read_scalars(empty)


def test_loss_log_is_read_and_used_when_tensorboard_has_no_events(tmp_path):
    loss_log = tmp_path / "loss.jsonl"
    loss_log.write_text("\n".join(json.dumps(record) for record in [
        {"step": 1, "loss": 3.25, "lr": 1e-4, "tokens_per_s": 900.0},
        {"step": 2, "event": "skip", "loss": 50.0},
        {"step": 2, "loss": 3.0, "lr": 2e-4, "tokens_per_s": 950.0, "rows": [1, 2]},
    ]) + "\n", encoding="utf-8")
    runs = read_loss_log(loss_log)
    assert runs["loss_log"]["loss"] == [(1, 3.25), (2, 3.0)]
    assert set(runs["loss_log"]) == {"loss", "lr", "tokens_per_s"}
    empty_tensorboard = tmp_path / "tb"
    empty_tensorboard.mkdir()
    assert training_runs(empty_tensorboard, loss_log) == runs
    with pytest.raises(InputError, match="no tensorboard event files"):
        training_runs(empty_tensorboard, None)


@pytest.mark.slow
def test_compare_full_and_sliced_smollm2(smollm2_dir, sliced_smollm2_dir, data_dir, tmp_path):
    logs = tmp_path / "tb"
    write_events(logs, {"loss": [(1, 2.0), (2, 1.5)]})
    output = tmp_path / "report"
    heldout = data_dir / "heldout"
    rows = main([
        "--model", f"sliced={sliced_smollm2_dir}", "--model", f"full={smollm2_dir}",
        "--data", str(heldout / "cs_fortunes.jsonl"), str(heldout / "en_libreoffice_help.jsonl"),
        "--mc", str(data_dir / "eval" / "cs_translate_mc.jsonl"), "--max_questions", "2",
        "--max_documents", "1", "--max_length", "128", "--stride", "64",
        "--tensorboard_dir", str(logs), "--output_dir", str(output), "--no_progress",
    ])
    by_key = {(row["metric"], row["dataset"]): row for row in rows}
    english = by_key[("bits/byte", "en_libreoffice_help")]["values"]
    assert english["full"] < english["sliced"]  # 30 layers predict English better than 2
    # Same tokenizer, same text: the same characters per token.
    chars = by_key[("chars/token", "cs_fortunes")]["values"]
    assert chars["full"] == chars["sliced"] > 1
    accuracy = by_key[("MC accuracy", "cs_translate_mc")]
    assert set(accuracy["stderr"]) == {"sliced", "full"}
    assert all(value in (0, 0.5, 1) for value in accuracy["values"].values())
    report = (output / "report.md").read_text()
    assert "\n| metric | data | sliced | full | full − sliced |\n" in report
    assert "![training curves](training_curves.png)" in report
    assert f"{english['full']:.4f}" in report
    assert json.loads((output / "comparison.json").read_text())["rows"] == json.loads(json.dumps(rows))
    for png in ("comparison.png", "training_curves.png"):
        assert (output / png).read_bytes().startswith(PNG_SIGNATURE)


def test_markdown_difference_column():
    rows = [{"metric": "bits/byte", "dataset": "cs", "values": {"base": 3.5, "adapted": 2.0}, "stderr": None},
            {"metric": "MC accuracy", "dataset": "mc", "values": {"base": 0.25, "adapted": 0.5},
             "stderr": {"base": 0.1, "adapted": 0.1}}]
    lines = to_markdown(rows).splitlines()
    assert lines[2] == "| bits/byte | cs | 3.5000 | 2.0000 | -1.5000 |"
    assert lines[3] == "| MC accuracy | mc | 0.2500 ± 0.1000 | 0.5000 ± 0.1000 | +0.2500 |"


def test_model_specs_and_errors(tmp_path, data_dir):
    assert parse_model_spec("base=/models/a=b") == ("base", "/models/a=b")
    assert parse_model_spec("/models/smollm2") == ("smollm2", "/models/smollm2")
    with pytest.raises(InputError, match="NAME=PATH"):
        parse_model_spec("=/models/a")
    with pytest.raises(InputError, match="no such model folder"):
        main(["--model", f"base={tmp_path / 'absent'}", "--mc", str(data_dir / "eval" / "cs_translate_mc.jsonl"),
              "--output_dir", str(tmp_path / "out")])
    with pytest.raises(InputError, match="nothing to compare"):
        main(["--model", f"base={tmp_path}", "--output_dir", str(tmp_path / "out")])


def test_bad_inputs_are_refused_before_any_model_loads(tmp_path, data_dir):
    # The model folder holds nothing loadable: reaching the load would fail with another message.
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    heldout = data_dir / "heldout" / "cs_fortunes.jsonl"
    other = tmp_path / "other" / "cs_fortunes.jsonl"
    other.parent.mkdir()
    other.write_text('{"target": "Dobrý den."}\n', encoding="utf-8")
    common = ["--model", f"base={model}", "--output_dir", str(tmp_path / "out")]
    with pytest.raises(InputError, match="also named 'cs_fortunes'") as caught:  # was one silently dropped
        main(common + ["--data", str(heldout), str(other)])
    assert caught.value.path == str(other)
    with pytest.raises(InputError, match="stride must be in 1..max_length-1"):
        main(common + ["--data", str(heldout), "--max_length", "64", "--stride", "100"])
    with pytest.raises(InputError, match="--max_questions must be at least 1, got 0"):
        main(common + ["--mc", str(data_dir / "eval" / "cs_translate_mc.jsonl"), "--max_questions", "0"])
