"""Helpers shared by the reliability tests: running a CLI as its entry point does, comparing folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from colossal_lang.errors import run_cli


def save_tiny_llama(tokenizer_dir: Path, output_dir: Path, vocab_rows: int) -> Path:
    """A random one-layer Llama with `vocab_rows` embedding rows, saved with the tokenizer of `tokenizer_dir`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_rows, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                         max_position_embeddings=128)
    LlamaForCausalLM(config).save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(output_dir)
    return output_dir


def copy_without(source: Path, destination: Path, *names: str) -> Path:
    """A copy of folder `source` without the files `names`."""
    shutil.copytree(source, destination)
    for name in names:
        (destination / name).unlink()
    return destination


def run_expecting_input_error(main, argv, capsys) -> str:
    """Run a CLI `main` the way its `__main__` does; assert exit 2 and one `error:` line; return that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [str(arg) for arg in argv])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert stderr.rstrip("\n").endswith(errors[0]), "the error line is the last thing printed"
    return errors[0]


def folder_files(folder: Path) -> dict:
    """{relative path: bytes} of every file under `folder`."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(Path(folder).rglob("*")) if path.is_file()}
