"""benchmarks/gpu_check.py's wrapper on CPU: logs kept, rows printed as cases end, a timed-out launch killed with
its workers while the next case still runs, the planned command lines accepted by train.py, and one real
save + resume case through train.py (ddp over gloo)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import gpu_check  # noqa: E402
from gpu_launch import run_launch  # noqa: E402

FAKE_TRAIN = Path(__file__).with_name("fake_train.py")


def gone(pid: int) -> bool:
    """No such process, or only its zombie (a container's pid 1 may never reap orphans)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_launch_past_its_timeout_is_killed_with_workers_in_other_sessions(tmp_path):
    launcher = tmp_path / "launcher.py"
    launcher.write_text(textwrap.dedent(f"""
        import os, subprocess, sys, time
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        open({str(tmp_path / "pids")!r}, "w").write(f"{{os.getpid()}} {{worker.pid}}")
        print("launcher up", flush=True)
        time.sleep(600)
    """))
    result = run_launch([sys.executable, str(launcher)], tmp_path / "logs" / "launch.log", timeout_s=8, grace_s=2)
    assert result.timed_out and result.returncode is None and not result.ok
    launcher_pid, worker_pid = map(int, (tmp_path / "pids").read_text().split())
    assert gone(launcher_pid) and gone(worker_pid)
    log = result.log.read_text()
    assert log.startswith(f"$ {sys.executable} {launcher}") and "launcher up" in log and "timed out after" in log


def test_done_ends_a_launch_early_and_counts_as_success(tmp_path):
    flag = tmp_path / "measured"
    script = f"import time, pathlib; pathlib.Path({str(flag)!r}).touch(); time.sleep(600)"
    result = run_launch([sys.executable, "-c", script], tmp_path / "launch.log", timeout_s=60, done=flag.exists,
                        grace_s=2)
    assert result.ended_early and result.ok and not result.timed_out and result.seconds < 30


def test_rows_are_printed_as_cases_end_and_a_timeout_does_not_stop_the_run(tmp_path, capsys):
    cases = [gpu_check.Case("smollm2", "ddp", "bf16"), gpu_check.Case("smollm2", "gemini", "bf16"),
             gpu_check.Case("1b", "zero2", "bf16", attention="causal", resume=False, accumulation_steps=1)]
    printed_before_launch = []

    def fake_command(argv: list[str], gpus: int) -> list[str]:
        printed_before_launch.append(capsys.readouterr().out)
        return [sys.executable, str(FAKE_TRAIN), *argv]

    settings = gpu_check.Settings(work=tmp_path / "work", out=tmp_path / "out", steps=2, mfu_steps=4, warmup_steps=1,
                                  timeout_s=8, command_for=fake_command)
    (tmp_path / "model").mkdir()
    rows = gpu_check.run_all(cases, lambda name: tmp_path / "model", tmp_path / "data", settings, "# title")
    printed = "".join(printed_before_launch) + capsys.readouterr().out

    resumed, hung, measured = rows
    assert resumed["status"] == "ok" and resumed["resumed"] and resumed["steps_logged"] == [1, 2, 3, 4]
    assert resumed["tokens_per_s"] == 3000.0 and resumed["mfu"] == pytest.approx(0.03)  # steps 2 and 4 only
    assert resumed["peak_gib"] == 2.0
    assert hung["status"].startswith("TIMED OUT in 1-save") and "killed with its workers" in hung["status"]
    assert measured["status"] == "ok" and measured["launches"][0]["ended_early"]
    assert measured["steps_logged"] == [1, 2, 3, 4] and measured["tokens_per_s"] == 3000.0  # steps 2..4
    # the ddp row was printed before gemini's first launch started, gemini's before zero2's
    ddp_line, gemini_line = gpu_check.table_line(resumed), gpu_check.table_line(hung)
    assert len(printed_before_launch) == 4  # ddp save, ddp resume, gemini save (hung), zero2 measure
    assert ddp_line not in "".join(printed_before_launch[:2]) and ddp_line in printed_before_launch[2]
    assert gemini_line in printed_before_launch[3] and gpu_check.table_line(measured) in printed
    logs = settings.out / "logs"
    assert "resumed from" in (logs / resumed["case"] / "2-resume.log").read_text()
    assert "worker started" in (logs / hung["case"] / "1-save.log").read_text()
    assert [json.loads(line)["case"] for line in (settings.out / "rows.jsonl").read_text().splitlines()] == \
        [r["case"] for r in rows]
    assert (settings.out / "table.md").read_text().count("\n| ") == 4  # header + 3 rows


def test_the_hung_launchs_worker_is_gone(tmp_path):
    settings = gpu_check.Settings(work=tmp_path / "work", out=tmp_path / "out", steps=2, timeout_s=8, keep_checkpoints=True,
                                  command_for=lambda argv, gpus: [sys.executable, str(FAKE_TRAIN), *argv])
    row = gpu_check.run_case(gpu_check.Case("smollm2", "gemini", "fp16"), tmp_path, tmp_path, settings)
    assert row["status"].startswith("TIMED OUT")
    assert gone(int((settings.work / "checkpoints" / row["case"] / "worker.pid").read_text()))


@pytest.fixture(scope="module")
def tiny_model(smollm2_tokenizer, tmp_path_factory) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(out)
    smollm2_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_dataset(smollm2_tokenizer, tmp_path_factory) -> Path:
    try:  # the helper moves from tests/training/ to colossal_lang/testing/ (issue 13)
        from colossal_lang.testing.prepared import read_texts, write_prepared_dataset
    except ImportError:
        from tests.training.prepared import read_texts, write_prepared_dataset

    texts = {"cs": read_texts("cs/fortunes.jsonl", 60), "en": read_texts("en/state_of_the_union.jsonl", 6)}
    return write_prepared_dataset(tmp_path_factory.mktemp("packed"), smollm2_tokenizer, texts, max_length=64)


def flag_value(config, name: str):
    """--name's parsed value, from a flat namespace or from a configuration made of groups (config.optim.lr)."""
    if hasattr(config, name):
        return getattr(config, name)
    for group in vars(config).values():
        if hasattr(group, name):
            return getattr(group, name)
    raise AttributeError(name)


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_every_planned_launch_passes_train_py_checks(gpus, tiny_model, tiny_dataset, tmp_path, monkeypatch):
    import torch
    from transformers import AutoConfig

    from colossal_lang.training.flags import parse_train_args
    from colossal_lang.training.plugins import check_plugin

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the checks a CUDA machine would make
    cases = gpu_check.plan_cases(["plugins", "mfu"], list(gpu_check.PLUGINS), ["bf16", "fp16"], ["zero2", "gemini"],
                                 ["causal", "doc_causal"], accumulation_steps=2, batch_size=8, mfu_batch_size=8)
    assert [c.plugin for c in cases[:6]] == list(gpu_check.PLUGINS) and {c.precision for c in cases[:6]} == {"bf16"}
    assert [(c.plugin, c.attention) for c in cases[6:10]] == [("zero2", "causal"), ("zero2", "doc_causal"),
                                                              ("gemini", "causal"), ("gemini", "doc_causal")]
    assert [c.plugin for c in cases[10:]] == list(gpu_check.PLUGINS) and {c.precision for c in cases[10:]} == {"fp16"}
    model_config = AutoConfig.from_pretrained(tiny_model)
    for case in cases:
        common = gpu_check.train_argv(case, tiny_model, tiny_dataset, tmp_path / "ckpt", tmp_path / "log.jsonl",
                                      6 if case.resume else 10, gpus, flash=False)
        for name, argv in gpu_check.launches(case, common, 3):
            config = parse_train_args(argv)
            check_plugin(config, world_size=gpus, model_config=model_config)
            value = lambda name: flag_value(config, name)  # noqa: E731
            assert (value("plugin"), value("mixed_precision"), value("attention")) == \
                (case.plugin, case.precision, case.attention)
            pipeline = case.plugin == "3d" and gpus >= 4
            assert value("accumulation_steps") == (2 if case.resume and not pipeline else 1)
            assert value("pp") == (2 if pipeline else 1)
            assert value("use_grad_checkpoint") == case.resume and value("progress") is False
            assert (value("load_checkpoint") == "latest") == (name == "2-resume")
            assert value("stop_at_step") == (3 if name == "1-save" else 0)
            if case.plugin == "3d":
                assert (value("tp"), value("zero_stage")) == (min(gpus, 2), 1)


@pytest.mark.slow
def test_main_runs_a_real_ddp_case_that_saves_resumes_and_reports(tiny_model, tmp_path, capsys):
    """gpu_check.main end to end on CPU: its own packed dataset, train.py under torchrun, table and rows."""
    out = tmp_path / "out"
    code = gpu_check.main(["--cpu", "--out", str(out), "--smollm2", str(tiny_model), "--parts", "plugins",
                           "--plugins", "ddp", "--precisions", "bf16", "--seq_length", "64", "--batch_size", "2",
                           "--steps", "2", "--timeout", "240"])
    printed = capsys.readouterr().out
    (row,) = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert code == 0 and row["status"] == "ok", row
    assert row["resumed"] and row["steps_logged"] == [1, 2, 3, 4] and row["accumulation_steps"] == 2
    assert row["tokens_per_s"] > 0 and row["peak_gib"] > 0 and "mfu" not in row  # no peak FLOP/s on CPU
    assert [launch["exit"] for launch in row["launches"]] == [0, 0]
    assert not (out / "work" / "checkpoints" / row["case"]).exists()  # deleted after the case
    assert "saved checkpoint" in (out / "logs" / row["case"] / "1-save.log").read_text()
    assert gpu_check.table_line(row) in printed and gpu_check.table_line(row) in (out / "table.md").read_text()
    manifest = json.loads((out / "work" / "data-64" / "manifest.json").read_text())
    assert manifest["max_length"] == 64 and set(manifest["categories"]) == {"cs", "en"}
