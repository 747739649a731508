"""Which tokenizer family a folder holds, and encoders for measuring any tokenizer.

The generic loading (tokenizer.json, SentencePiece models, `AutoTokenizer`) is in `colossal_lang.io.tokenizer_files`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from colossal_lang.errors import InputError
from colossal_lang.io.tokenizer_files import load_hf_tokenizer, sentencepiece_processor


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
