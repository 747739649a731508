"""Writing complete Hugging Face tokenizer folders for expanded tokenizers.

The base's tokenizer_config.json and special_tokens_map.json are carried over (special tokens, their
ids and the chat template do not change); the model files are rewritten. The commands write into
`colossal_lang.io.atomic_folder.staged_folder`, after `colossal_lang.io.hf_folders.check_output_folder`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

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
