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
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise InputError(f"invalid UTF-8 at byte {error.start}", path) from None
    except json.JSONDecodeError as error:
        raise InputError(f"invalid JSON: {error.msg}", path, error.lineno) from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise InputError("not a tokenizers file: expected a JSON object with a 'model' object", path)
    return config


def read_sentencepiece_model(path: Union[str, Path]):
    """The ModelProto of a SentencePiece .model file; InputError when it does not parse."""
    from google.protobuf.message import DecodeError

    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    try:
        proto.ParseFromString(Path(path).read_bytes())
    except DecodeError:
        raise InputError("not a SentencePiece model (the file does not parse)", path) from None
    if not len(proto.pieces):
        raise InputError("not a SentencePiece model (it holds no pieces)", path)
    return proto


def sentencepiece_processor(path: Union[str, Path]):
    """A SentencePieceProcessor for a .model file; InputError when the file is not a SentencePiece model."""
    import sentencepiece as spm

    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as error:
        raise InputError(f"not a SentencePiece model: {first_line(error)}", path) from None


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (library messages can run to many lines)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# Any one of these lets transformers build a tokenizer; the others only complete one.
TOKENIZER_FILE_NAMES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
_ALL_TOKENIZER_FILES = TOKENIZER_FILE_NAMES + ("merges.txt", "special_tokens_map.json", "added_tokens.json")


def load_hf_tokenizer(path: Union[str, Path], what: str = "tokenizer"):
    """`AutoTokenizer.from_pretrained(path)`, with every failure turned into a one-line InputError naming `path`."""
    from transformers import AutoTokenizer

    path = Path(path)
    if path.is_dir() and not any((path / name).is_file() for name in TOKENIZER_FILE_NAMES):
        raise InputError(f"cannot load the {what}: the folder holds none of {', '.join(TOKENIZER_FILE_NAMES)}", path)
    if path.is_dir() and (path / "tokenizer.json").is_file():
        load_base_tokenizer_json(path)  # a corrupt tokenizer.json is named with its line, not as a Rust parse error
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for a corrupt tokenizer.json
        present = sorted(item.name for item in path.iterdir() if item.name in _ALL_TOKENIZER_FILES) if path.is_dir() else []
        held = f" (the folder holds {', '.join(present)})" if present else ""
        raise InputError(f"cannot load the {what}{held}: {first_line(error)}", path) from None


def find_sentencepiece_model(path: Union[str, Path]):
    """The tokenizer.model inside a folder (or the file itself), or None when there is none."""
    path = Path(path)
    if path.is_file() and path.suffix == ".model":
        return path
    if path.is_dir() and (path / "tokenizer.model").is_file():
        return path / "tokenizer.model"
    return None


def load_encoder(path: Union[str, Path]):
    """An object with .encode(text) -> ids (no special tokens), .decode(ids) and a .name, for reports."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such tokenizer file or folder", path)
    if path.is_file() and path.suffix == ".model":
        return _SentencePieceEncoder(sentencepiece_processor(path), str(path))
    return _HFEncoder(load_hf_tokenizer(path), str(path))


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
