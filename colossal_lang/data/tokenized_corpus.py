"""Loading the tokenizer for preparation, with a clear error (kept at this path for its importers).

The whole-corpus arrays that used to live here are gone: preparation streams (see `prepare_common.py`).
"""

from __future__ import annotations

from pathlib import Path

from colossal_lang.errors import InputError
from colossal_lang.io.tokenizer_files import load_hf_tokenizer


def load_tokenizer(tokenizer_dir):
    """A fast Hugging Face tokenizer from `tokenizer_dir`, or an InputError naming the folder."""
    if not Path(tokenizer_dir).is_dir():
        raise InputError("no such tokenizer folder", tokenizer_dir)
    tokenizer = load_hf_tokenizer(tokenizer_dir)
    # Documents are chunked here, so the model's context limit does not apply to whole documents.
    tokenizer.model_max_length = 1 << 60
    if not getattr(tokenizer, "is_fast", False):
        raise InputError("the tokenizer is not a fast (Rust) tokenizer; character offsets are needed for exact masks", tokenizer_dir)
    return tokenizer
