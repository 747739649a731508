"""Canonical surface forms of tokens: the bytes a token stands for, whatever the tokenizer family.

Byte-level BPE (GPT-2, Llama-3, SmolLM) writes each byte as a printable character (`Ġ` is a space);
SentencePiece writes a space as `▁` and unknown bytes as `<0xNN>` pieces. Comparing the bytes lets a
vocabulary swap match `Ġthe` with `▁the` and `<0xC3>` with `Ã`.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Dict, Optional

SPM_SPACE = "\u2581"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> Dict[int, str]:
    """The GPT-2 byte-to-character table (the one the `tokenizers` ByteLevel pre-tokenizer uses)."""
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode as gpt2_table

    return gpt2_table()


@lru_cache(maxsize=1)
def unicode_to_bytes() -> Dict[str, int]:
    return {char: byte for byte, char in bytes_to_unicode().items()}


def byte_level_to_bytes(token: str) -> Optional[bytes]:
    """The bytes of a byte-level BPE token, or None if it holds a character outside the byte alphabet."""
    table = unicode_to_bytes()
    try:
        return bytes(table[char] for char in token)
    except KeyError:
        return None


def bytes_to_byte_level(data: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[byte] for byte in data)


def spm_piece_to_bytes(piece: str) -> bytes:
    """The bytes of a SentencePiece piece: `▁` is a space and `<0xNN>` is one raw byte."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            pass
    return piece.replace(SPM_SPACE, " ").encode("utf-8")


def token_bytes(token: str, family: str) -> Optional[bytes]:
    """The bytes a token stands for (None for a byte-level token outside the byte alphabet); family is
    'byte_level' or 'spm'."""
    return byte_level_to_bytes(token) if family == "byte_level" else spm_piece_to_bytes(token)


def token_text(token: str, family: str) -> Optional[str]:
    """The text of a token (None if it is a partial UTF-8 sequence); family is 'byte_level' or 'spm'."""
    data = token_bytes(token, family)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def has_target_script_letter(text: str, script: Optional[str] = None) -> bool:
    """True if `text` holds a non-ASCII letter (of `script`, e.g. 'LATIN' or 'CYRILLIC', when given).

    Vikhr kept only Cyrillic pieces; for Latin-script languages such as Czech, the non-ASCII letters
    (č, ř, ů, ...) are what English text never contains.
    """
    for char in text:
        if ord(char) < 128 or not char.isalpha():
            continue
        if script is None or unicodedata.name(char, "").startswith(script.upper()):
            return True
    return False
