"""Colossal-LLaMA's train.py flags: each honoured, mapped onto ours, or refused naming the replacement; and the
command lines of its train.example.sh / train_sft.example.sh (which its README tells users to copy) run here."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from colossal_lang.errors import InputError
from colossal_lang.training.flags import parse_train_args
from tests.training.conftest import run_training

PEER = Path("/work/shared/peers/Colossal-LLaMA")


def parse(model_dir, *flags):
    return parse_train_args(["--pretrained", str(model_dir), "--dataset", "x", *flags])


def test_aliases_and_mappings(tiny_model_dir):
    config = parse(tiny_model_dir, "--micro_batch_size", "3", "--gradient_clipping", "0.5", "--plugin", "3d", "--zero", "1")
    assert config.data.batch_size == 3 and config.optim.grad_clip == 0.5 and config.parallel.zero_stage == 1
    assert parse(tiny_model_dir, "--plugin", "zero2", "--zero_cpu_offload").parallel.plugin == "zero2_cpu"
    offload = parse(tiny_model_dir, "--plugin", "3d", "--zero_stage", "2", "--zero_cpu_offload")
    assert offload.parallel.plugin == "3d" and offload.parallel.zero_cpu_offload
    sequence = parse(tiny_model_dir, "--plugin", "3d", "--tp", "2", "--enable_sequence_parallelism")
    assert sequence.parallel.sp == 2 and "--sp 2" in " ".join(sequence.notes)
    assert parse(tiny_model_dir, "--save_each_epoch").checkpoint.save_each_epoch
    assert not parse(tiny_model_dir, "--save_each_epoch", "--skip_save_each_epoch").checkpoint.save_each_epoch
    assert "--num_samples ignored" in parse(tiny_model_dir, "--num_samples", "500").notes[0]


@pytest.mark.parametrize("flags, message", [
    (["--benchmark"], "benchmarks/bench_training.py"),
    (["--zero_cpu_offload"], "use --plugin zero2_cpu"),
    (["--plugin", "3d", "--zero_cpu_offload"], "needs --zero_stage 1 or 2"),
    (["--enable_sequence_parallelism"], "needs --plugin 3d"),
    (["--plugin", "3d", "--enable_sequence_parallelism"], "needs --tp > 1"),
    (["--plugin", "3d", "--sp_mode", "all_to_all", "--enable_sequence_parallelism"], "set --sp N"),
    (["--max_length", "0"], "at least 1"),
])
def test_refusals_name_the_replacement(tiny_model_dir, flags, message):
    with pytest.raises(InputError, match=re.escape(message)):
        parse(tiny_model_dir, *flags)


def test_max_length_and_padding_mode_follow_the_dataset(tiny_model_dir, ragged_dataset):
    from colossal_lang.data.loader import load_prepared_dataset
    from colossal_lang.training import builders as setup
    from colossal_lang.training.plugins import plugin_traits

    prepared = load_prepared_dataset([str(ragged_dataset)])
    assert prepared.max_length == 48
    with pytest.raises(InputError, match="prepared with max_length 48, longer than --max_length 32"):
        setup.check_max_length(parse(tiny_model_dir, "--max_length", "32").data, prepared)
    setup.check_max_length(parse(tiny_model_dir, "--max_length", "48").data, prepared)
    fixed = parse(tiny_model_dir, "--padding_mode", "max_length")
    multiple = setup.padding_multiple(fixed.data, prepared, plugin_traits(fixed))
    loader, _ = setup.build_loader(fixed.data, prepared, 0, "doc_causal", multiple, 1, 0, seed=1)
    batch = next(iter(loader))
    assert batch["input_ids"].shape[1] == 48  # every batch padded to the run's length, whatever its rows
    assert min(len(prepared.dataset[i]["input_ids"]) for i in batch["indices"]) < 48


def example_command(script: Path) -> tuple[list, list]:
    """(launcher arguments, train.py arguments) of the `colossalai run ... train.py ...` line of a peer script."""
    text = script.read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("colossalai run"))
    words = shlex.split(line)
    return words[2:words.index("train.py")], words[words.index("train.py") + 1:]


def substituted(words: list, paths: dict, sizes: dict) -> list:
    """The script's words with its shell variables replaced by paths and its sizes by small ones."""
    out = []
    for word in words:
        if word in paths:
            value = paths[word]
            out += value if isinstance(value, list) else [value]
        else:
            out.append(word)
    for flag, size in sizes.items():
        if flag in out:
            out[out.index(flag) + 1] = size
    return out


@pytest.mark.parametrize("script", ["train.example.sh", "train_sft.example.sh"])
def test_colossal_llama_example_scripts_run(script, tiny_model_dir, ragged_dataset, tmp_path):
    """Paths and sizes replaced, nothing else; 2 gloo workers (torchrun instead of `colossalai run --hostfile`, which
    needs ssh). On CPU the script's device choices (zero2, flash attention) are refused with the one-line reason,
    and the same line trains once `--plugin ddp --no-use_flash_attn` is appended."""
    import torch

    launcher, words = example_command(PEER / script)
    assert launcher[:2] == ["--nproc_per_node", "8"]
    parts = sorted(str(p) for p in (ragged_dataset / "arrow").iterdir())  # as its README lists them: part folders
    paths = {"$PRETRAINED_MODEL_PATH": str(tiny_model_dir), "${dataset[@]}": parts, "$SAVE_DIR": str(tmp_path / "save"),
             "$TENSORBOARD_DIR": str(tmp_path / "tensorboard"), "$CONFIG_FILE": str(tmp_path / "config.json")}
    sizes = {"--save_interval": "2", "--micro_batch_size": "2", "--accumulation_steps": "2", "--warmup_steps": "1"}
    argv = substituted(words, paths, sizes)
    if not torch.cuda.is_available():
        refused = run_training(2, argv, check=False)
        assert refused.returncode != 0
        assert "--plugin zero2 needs CUDA" in refused.stderr and "unrecognized arguments" not in refused.stderr
        argv = argv + ["--plugin", "ddp", "--no-use_flash_attn"]
    result = run_training(2, argv)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["batch_size"] == 2 and config["lr"] == float(words[words.index("--lr") + 1])
    assert config["pad_token"] == "unk" if "unk" in words else config["pad_token"] == "eos"
    assert config["use_neft"] == ("--use_neft" in words) and config["use_grad_checkpoint"]
    final = tmp_path / "save" / "final"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(final)
    expected_pad = tokenizer.unk_token if config["pad_token"] == "unk" else tokenizer.eos_token
    assert tokenizer.pad_token == expected_pad
    assert list((tmp_path / "tensorboard").glob("events.*"))
    assert "done:" in result.stdout
