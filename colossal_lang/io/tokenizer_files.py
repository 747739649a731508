"""Loading tokenizers given as folders, tokenizer.json files or SentencePiece .model files.

Every failure is one InputError naming the path: a missing folder, a folder without tokenizer files,
a corrupt tokenizer.json (with its line), a file that is not a SentencePiece model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from colossal_lang.errors import InputError
from colossal_lang.io.error_text import first_line

# Any one of these lets transformers build a tokenizer; the others only complete one.
TOKENIZER_FILE_NAMES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
_ALL_TOKENIZER_FILES = TOKENIZER_FILE_NAMES + ("merges.txt", "special_tokens_map.json", "added_tokens.json")


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


def find_sentencepiece_model(path: Union[str, Path]):
    """The tokenizer.model inside a folder (or the file itself), or None when there is none."""
    path = Path(path)
    if path.is_file() and path.suffix == ".model":
        return path
    if path.is_dir() and (path / "tokenizer.model").is_file():
        return path / "tokenizer.model"
    return None


def load_hf_tokenizer(path: Union[str, Path], what: str = "tokenizer"):
    """`AutoTokenizer.from_pretrained(path)` of a local folder, every failure a one-line InputError naming `path`."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        # Checked here: a missing local path would otherwise be looked up as a Hub model id.
        raise InputError(f"no such {what} folder" if not path.exists() else f"the {what} must be a folder, got a file", path)
    if not any((path / name).is_file() for name in TOKENIZER_FILE_NAMES):
        raise InputError(f"cannot load the {what}: the folder holds none of {', '.join(TOKENIZER_FILE_NAMES)}", path)
    if (path / "tokenizer.json").is_file():
        load_base_tokenizer_json(path)  # a corrupt tokenizer.json is named with its line, not as a Rust parse error
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for a corrupt tokenizer.json
        present = sorted(item.name for item in path.iterdir() if item.name in _ALL_TOKENIZER_FILES)
        held = f" (the folder holds {', '.join(present)})" if present else ""
        raise InputError(f"cannot load the {what}{held}: {first_line(error)}", path) from None
