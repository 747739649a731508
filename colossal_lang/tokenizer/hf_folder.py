"""Writing complete Hugging Face tokenizer folders for expanded tokenizers.

The base's tokenizer_config.json and special_tokens_map.json are carried over (special tokens, their
ids and the chat template do not change); the model files are rewritten. The commands write into
`colossal_lang.io.atomic_folder.staged_folder`, after `colossal_lang.io.hf_folders.check_output_folder`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional, Sequence

from colossal_lang.errors import InputError

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
    # No indent: json's C encoder only runs without one (Gemma 3's file: 1 s instead of 20 s).
    (output_dir / "tokenizer.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
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
    config_path = output_dir / "tokenizer_config.json"
    carried = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else None
    if carried is not None:
        slow = LlamaTokenizer.from_pretrained(output_dir)
    else:
        # legacy=True: encode exactly as the SentencePiece model does (LLaMA-2 and Mistral v1 behaviour).
        slow = LlamaTokenizer(vocab_file=str(output_dir / "tokenizer.model"), legacy=True)
    slow.save_pretrained(output_dir)
    # The converter writes the dummy prefix (Prepend "▁") only when add_prefix_space is truthy, and the
    # configs transformers itself saves hold `"add_prefix_space": null`: take it from the model instead.
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    dummy_prefix = model_pb2.ModelProto.FromString(model_bytes).normalizer_spec.add_dummy_prefix
    fast = LlamaTokenizerFast.from_pretrained(output_dir, from_slow=True, add_prefix_space=dummy_prefix)
    fast.save_pretrained(output_dir)
    # A saved add_prefix_space makes every later load rebuild the fast tokenizer from the slow one:
    # put back the base's value, so tokenizer.json (which now holds the prefix) is what loads.
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if carried is None or "add_prefix_space" not in carried:
        config.pop("add_prefix_space", None)
    else:
        config["add_prefix_space"] = carried["add_prefix_space"]
    config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return output_dir


def check_slow_and_fast_agree(folder: Path, texts: Sequence[str]) -> int:
    """InputError unless the folder's slow (tokenizer.model) and fast (tokenizer.json) tokenizers give the
    same ids on every text (special tokens included: BOS and the dummy prefix both count); returns the count."""
    from transformers import AutoTokenizer

    slow = AutoTokenizer.from_pretrained(folder, use_fast=False)
    fast = AutoTokenizer.from_pretrained(folder, use_fast=True)
    for number, text in enumerate(texts, start=1):
        slow_ids, fast_ids = slow.encode(text), fast.encode(text)
        if slow_ids != fast_ids:
            first = next(i for i, (a, b) in enumerate(zip(slow_ids + [None], fast_ids + [None])) if a != b)
            raise InputError(f"tokenizer.model and tokenizer.json disagree on text {number} at token {first} "
                             f"({slow_ids[first:first + 3]} vs {fast_ids[first:first + 3]})", folder)
    return len(texts)
