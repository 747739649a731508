"""Loading a Hugging Face causal LM folder for evaluation or generation, with errors that name the path."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import torch

from colossal_lang.errors import InputError
from colossal_lang.model.loading import check_model_folder as check_folder
from colossal_lang.model.loading import load_causal_lm
from colossal_lang.tokenizer.load import load_hf_tokenizer

DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


def resolve_device(device: Optional[str]) -> torch.device:
    """`None`/"auto" picks CUDA when present, else CPU; anything else is passed to torch.device."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise InputError(f"bad --device {device!r}: {error}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device} asked for, but CUDA is not available on this machine")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """"auto" is bfloat16 on a CUDA device that supports it and float32 elsewhere (CPU half math is slow)."""
    if dtype not in DTYPE_CHOICES:
        raise InputError(f"--dtype must be one of {', '.join(DTYPE_CHOICES)}, got {dtype!r}")
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


def check_model_folder(model_path) -> Path:
    """Raise InputError unless `model_path` is a folder holding a Hugging Face config.json."""
    return check_folder(model_path, hint="; for a training checkpoint pass its final/ folder")


def load_tokenizer(tokenizer_path):
    """AutoTokenizer from a local folder, InputError naming the folder when that fails."""
    path = Path(tokenizer_path)
    if not path.is_dir():
        raise InputError("no such tokenizer folder", path)
    return load_hf_tokenizer(path)


def load_model_and_tokenizer(
    model_path, device: Optional[str] = None, dtype: str = "auto", tokenizer_path=None
) -> Tuple[torch.nn.Module, object]:
    """Load `AutoModelForCausalLM` + `AutoTokenizer` from local folders, in eval mode on `device`."""
    path = check_model_folder(model_path)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    tokenizer = load_tokenizer(tokenizer_path or path)
    model = load_causal_lm(path, torch_dtype)
    model.to(torch_device)
    model.eval()
    return model, tokenizer
