"""Loading a Hugging Face causal LM folder, with every input failure as one InputError naming the folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from colossal_lang.errors import InputError
from colossal_lang.tokenizer.load import first_line


def check_model_folder(model_path, hint: str = "") -> Path:
    """Raise InputError unless `model_path` is a folder holding a config.json; `hint` is added to that message."""
    path = Path(model_path)
    if not path.exists():
        raise InputError("no such model folder", path)
    if not path.is_dir():
        raise InputError("expected a Hugging Face model folder, got a file", path)
    if not (path / "config.json").is_file():
        raise InputError("not a Hugging Face model folder (no config.json)" + hint, path)
    return path


def load_causal_lm(
    model_path, dtype: Union[torch.dtype, str, None] = "auto", attn_implementation: Optional[str] = None,
    what: str = "a causal LM",
) -> torch.nn.Module:
    """`AutoModelForCausalLM.from_pretrained(model_path)` on CPU, low_cpu_mem_usage.

    A missing folder, a missing or corrupt config.json, missing or truncated weights and an unknown
    architecture all become InputError(problem, model_path); only MemoryError passes through.
    """
    from transformers import AutoModelForCausalLM

    path = check_model_folder(model_path)
    options = {"torch_dtype": dtype or "auto", "low_cpu_mem_usage": True}
    if attn_implementation is not None:
        options["attn_implementation"] = attn_implementation
    try:
        return AutoModelForCausalLM.from_pretrained(path, **options)
    except MemoryError:
        raise
    except Exception as error:  # missing or truncated weights (SafetensorError), a bad config, an unknown architecture
        raise InputError(f"cannot load {what}: {type(error).__name__}: {first_line(error)}", path) from None


def load_model_config(model_path):
    """`AutoConfig.from_pretrained(model_path)`; a missing or corrupt config.json becomes InputError naming the folder."""
    from transformers import AutoConfig

    path = check_model_folder(model_path)
    try:
        return AutoConfig.from_pretrained(path)
    except MemoryError:
        raise
    except Exception as error:  # invalid JSON, an unknown model_type
        raise InputError(f"cannot read config.json: {type(error).__name__}: {first_line(error)}", path) from None
