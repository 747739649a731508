"""Checks on Hugging Face folders before they are read or written, each failure one InputError naming the folder."""

from __future__ import annotations

from pathlib import Path

from colossal_lang.errors import InputError

# A folder holding any of these is a model or tokenizer folder that a new run may replace.
HF_FOLDER_MARKERS = ("config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")


def check_model_folder(model_path, hint: str = "") -> Path:
    """Raise InputError unless `model_path` is a folder holding a config.json; `hint` is added to that message."""
    path = Path(model_path)
    if not path.exists():
        raise InputError("no such model folder", path)
    if not path.is_dir():
        raise InputError("expected a Hugging Face model folder, got a file", path)
    if not (path / "config.json").is_file():
        raise InputError("not a Hugging Face model folder (no config.json)" + hint, path)
    return path


def check_output_folder(output_dir: Path) -> None:
    """InputError unless `output_dir` is absent, empty, or a model/tokenizer folder (which is then replaced).

    Refusing any other folder keeps a mistyped path (a home folder, a data folder) from being deleted.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError("output path is a file, not a folder", output_dir)
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not any((output_dir / name).is_file() for name in HF_FOLDER_MARKERS):
            raise InputError("output folder already holds other files (not a model or tokenizer folder); "
                             "choose a new folder or empty it", output_dir)
