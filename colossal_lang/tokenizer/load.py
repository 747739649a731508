"""Loading tokenizers given as folders, tokenizer.json files, SentencePiece .model files or objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from colossal_lang.errors import InputError


def load_base_tokenizer_json(base) -> dict:
    """The tokenizer.json content of a fast tokenizer given as a path, `tokenizers.Tokenizer` or HF tokenizer."""
    if hasattr(base, "backend_tokenizer"):
        base = base.backend_tokenizer
    if hasattr(base, "to_str"):
        return json.loads(base.to_str())
    path = Path(base)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise InputError("tokenizer.json not found", path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"invalid JSON: {error.msg}", path, error.lineno) from None


def find_sentencepiece_model(path: Union[str, Path]):
    """The tokenizer.model inside a folder (or the file itself), or None when there is none."""
    path = Path(path)
    if path.is_file() and path.suffix == ".model":
        return path
    if path.is_dir() and (path / "tokenizer.model").is_file():
        return path / "tokenizer.model"
    return None


def tokenizer_family(path: Union[str, Path]) -> str:
    """'spm' when the folder holds a SentencePiece model, 'byte_level' when its tokenizer.json is byte-level BPE."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such tokenizer file or folder", path)
    if find_sentencepiece_model(path) is not None:
        return "spm"
    config = load_base_tokenizer_json(path)
    pre = json.dumps(config.get("pre_tokenizer"))
    if config["model"].get("type") == "BPE" and "ByteLevel" in pre:
        return "byte_level"
    raise InputError("unsupported tokenizer: need a SentencePiece model or a byte-level BPE tokenizer.json", path)


def load_encoder(path: Union[str, Path]):
    """An object with .encode(text) -> ids (no special tokens), .decode(ids) and a .name, for reports."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such tokenizer file or folder", path)
    if path.is_file() and path.suffix == ".model":
        import sentencepiece as spm

        processor = spm.SentencePieceProcessor(model_file=str(path))
        return _SentencePieceEncoder(processor, str(path))
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load tokenizer: {str(error).splitlines()[0]}", path) from None
    return _HFEncoder(tokenizer, str(path))


class _SentencePieceEncoder:
    def __init__(self, processor, name: str):
        self.processor, self.name = processor, name

    def encode(self, text: str):
        return self.processor.encode(text)

    def decode(self, ids):
        return self.processor.decode(ids)

    def is_byte_fallback(self, token_id: int) -> bool:
        return self.processor.is_byte(token_id)


class _HFEncoder:
    def __init__(self, tokenizer, name: str):
        self.tokenizer, self.name = tokenizer, name
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.byte_ids = {i for i, piece in enumerate(vocab)
                         if piece and len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">")}

    def encode(self, text: str):
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids):
        return self.tokenizer.decode(ids)

    def is_byte_fallback(self, token_id: int) -> bool:
        return token_id in self.byte_ids
