"""Writing complete Hugging Face tokenizer folders for expanded tokenizers, and writing any folder atomically.

The base's tokenizer_config.json and special_tokens_map.json are carried over (special tokens, their
ids and the chat template do not change); the model files are rewritten.

`staged_folder` is how the tokenizer and model commands write their output: into a hidden sibling
(`.<name>.partial-<pid>`), renamed into place only once every file is written and synced, so a run killed
part way never leaves an output folder that looks complete, and a rerun starts clean.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from colossal_lang.atomic_folder import staged_folder as atomic_staged_folder
from colossal_lang.errors import InputError

# A folder holding any of these is a model or tokenizer folder that a new run may replace.
HF_FOLDER_MARKERS = ("config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")


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


@contextmanager
def staged_folder(output_dir: Path) -> Iterator[Path]:
    """`atomic_folder.staged_folder`, after refusing an output folder that holds something else."""
    check_output_folder(output_dir)
    with atomic_staged_folder(output_dir) as staging:
        yield staging


CARRIED_FILES = ("tokenizer_config.json", "special_tokens_map.json")


def _carry_configs(base_dir: Optional[Path], output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    if base_dir is None or not Path(base_dir).is_dir():
        return
    for name in CARRIED_FILES:
        source = Path(base_dir) / name
        if source.is_file():
            shutil.copyfile(source, output_dir / name)


def save_byte_level_folder(config: dict, base_dir: Optional[Path], output_dir: Path) -> Path:
    """tokenizer.json, plus vocab.json and merges.txt when the base has them (slow GPT-2 tokenizers read those)."""
    output_dir = Path(output_dir)
    _carry_configs(base_dir, output_dir)
    (output_dir / "tokenizer.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
    if base_dir is not None and (Path(base_dir) / "vocab.json").is_file():
        vocab = config["model"]["vocab"]
        (output_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    if base_dir is not None and (Path(base_dir) / "merges.txt").is_file():
        merges = [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in config["model"]["merges"]]
        (output_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    if not (output_dir / "tokenizer_config.json").is_file():
        from transformers import PreTrainedTokenizerFast

        PreTrainedTokenizerFast(tokenizer_file=str(output_dir / "tokenizer.json")).save_pretrained(output_dir)
    return output_dir


def save_sentencepiece_folder(model_bytes: bytes, base_dir: Optional[Path], output_dir: Path) -> Path:
    """tokenizer.model plus LlamaTokenizer (slow) and LlamaTokenizerFast (tokenizer.json) files."""
    from transformers import LlamaTokenizer, LlamaTokenizerFast

    output_dir = Path(output_dir)
    _carry_configs(base_dir, output_dir)
    stale = output_dir / "tokenizer.json"
    if stale.exists():
        stale.unlink()
    (output_dir / "tokenizer.model").write_bytes(model_bytes)
    if (output_dir / "tokenizer_config.json").is_file():
        slow = LlamaTokenizer.from_pretrained(output_dir)
    else:
        # legacy=True: encode exactly as the SentencePiece model does (LLaMA-2 and Mistral v1 behaviour).
        slow = LlamaTokenizer(vocab_file=str(output_dir / "tokenizer.model"), legacy=True)
    slow.save_pretrained(output_dir)
    fast = LlamaTokenizerFast.from_pretrained(output_dir, from_slow=True)
    fast.save_pretrained(output_dir)
    return output_dir
