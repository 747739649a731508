"""Bad model folders and weights-only folders are refused with one `error:` line naming the folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from colossal_lang.errors import InputError
from colossal_lang.training import checkpoint_format as checkpoint
from tests.training.conftest import base_args


def run_train_in_process(argv, monkeypatch, capsys):
    """train.py's main under run_cli, as one process in this interpreter; (exit status, stderr)."""
    import torch.distributed as dist

    import train
    from colossal_lang.errors import run_cli
    from tests.training.conftest import free_port

    # Its own single-process group, taken down after, so the launcher's variables leak into nothing else.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    try:
        with pytest.raises(SystemExit) as exited:
            run_cli(train.main, list(map(str, argv)))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return exited.value.code, capsys.readouterr().err


def error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("broken_file, message", [
    ("model.safetensors", "cannot load a causal LM: SafetensorError"),  # was a SafetensorError traceback
    ("config.json", "cannot read config.json: "),  # was a JSONDecodeError/OSError traceback
])
def test_a_cut_off_model_file_exits_2_with_one_line_naming_the_folder(broken_file, message, tiny_model_dir,
                                                                     packed_dataset, tmp_path, monkeypatch, capsys):
    model = tmp_path / "cut-off-model"
    shutil.copytree(tiny_model_dir, model)
    broken = model / broken_file
    broken.write_bytes(broken.read_bytes()[:100])
    status, stderr = run_train_in_process(base_args(model, packed_dataset, tmp_path / "save"), monkeypatch, capsys)
    assert status == 2 and "Traceback" not in stderr
    [line] = error_lines(stderr)
    assert line.startswith(f"error: {model}: {message}")


def remove_weight(modeling: Path, name: str) -> None:
    """Drop `name` from a Colossal-AI `modeling` folder: from its shard and from its index."""
    index_file = modeling / "pytorch_model.bin.index.json"
    index = json.loads(index_file.read_text())
    shard = modeling / index["weight_map"].pop(name)
    weights = torch.load(shard, weights_only=True)
    del weights[name]
    torch.save(weights, shard)
    index_file.write_text(json.dumps(index))


def test_weights_only_folder_missing_a_weight_is_refused(uninterrupted, tiny_model_dir, packed_dataset, tmp_path,
                                                         monkeypatch, capsys):
    modeling = tmp_path / "modeling"
    shutil.copytree(uninterrupted / "epoch-0_step-4" / "modeling", modeling)
    remove_weight(modeling, "model.layers.1.mlp.down_proj.weight")  # was: silently left at its initial values
    argv = base_args(tiny_model_dir, packed_dataset, tmp_path / "save", load_checkpoint=modeling, max_steps=1)
    status, stderr = run_train_in_process(argv, monkeypatch, capsys)
    assert status == 2 and "Traceback" not in stderr
    [line] = error_lines(stderr)
    assert line.startswith(f"error: {modeling}: weights-only loading refused: the folder lacks weights")
    assert "model.layers.1.mlp.down_proj.weight" in line


class FakeBoosted:
    """What load_weights uses of a boosted model (unwrap) and of a booster (load_model)."""

    def __init__(self, module):
        self.module, self.loaded = module, None

    def unwrap(self):
        return self.module

    def load_model(self, model, path, strict):
        self.loaded = path


def test_tied_head_may_be_absent_but_nothing_else(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    boosted = FakeBoosted(model)
    saved = set(load_file(tiny_model_dir / "model.safetensors"))
    assert "lm_head.weight" in model.state_dict() and "lm_head.weight" not in saved  # tied: save_pretrained drops it
    checkpoint.load_weights(boosted, boosted, tiny_model_dir, tied=True)
    assert boosted.loaded == str(tiny_model_dir)
    # Tying is the config's word (Gemini frees parameter storage, so pointers cannot tell): untied, the head must be there.
    with pytest.raises(InputError, match=r"lacks weights the model has \(1: lm_head.weight\)"):
        checkpoint.load_weights(FakeBoosted(model), FakeBoosted(model), tiny_model_dir, tied=False)

    untied = tmp_path / "extra"
    untied.mkdir()
    weights = load_file(tiny_model_dir / "model.safetensors")
    weights["model.layers.9.mlp.up_proj.weight"] = torch.zeros(1)
    save_file(weights, untied / "model.safetensors")
    with pytest.raises(InputError, match=r"holds weights the model does not have \(1: model.layers.9.mlp.up_proj"):
        checkpoint.load_weights(boosted, boosted, untied, tied=True)

    with pytest.raises(InputError, match="no model weights here") as caught:
        checkpoint.load_weights(boosted, boosted, tmp_path / "empty", tied=True)
    assert caught.value.path == str(tmp_path / "empty")


def test_a_tokenizer_folder_without_tokenizer_files_exits_2_before_launch(tiny_model_dir, packed_dataset, tmp_path,
                                                                         monkeypatch, capsys):
    model = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model_dir, model)
    for path in model.iterdir():
        if "token" in path.name or path.name in ("vocab.json", "merges.txt"):
            path.unlink()
    status, stderr = run_train_in_process(base_args(model, packed_dataset, tmp_path / "save"), monkeypatch, capsys)
    assert status == 2 and "Traceback" not in stderr
    [line] = error_lines(stderr)
    assert line.startswith(f"error: {model}: cannot load the tokenizer: the folder holds none of ")
