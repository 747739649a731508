"""Names of torch dtypes and devices as the commands spell them, in one table.

Model commands say `float32 | bfloat16 | float16` (and `auto`); train.py's `--mixed_precision` says
`fp32 | bf16 | fp16`, as Colossal-AI does.
"""

from __future__ import annotations

from typing import Optional

import torch

from colossal_lang.errors import InputError

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto",) + tuple(TORCH_DTYPES)
PRECISION_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
PRECISION_DTYPES = {short: TORCH_DTYPES[name] for short, name in PRECISION_NAMES.items()}


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
    return TORCH_DTYPES[dtype]
