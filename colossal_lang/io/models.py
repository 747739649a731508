"""Loading a Hugging Face causal LM folder (for training, evaluation or generation), every input failure one
InputError naming the folder."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from colossal_lang.errors import InputError
from colossal_lang.io.dtypes import resolve_device, resolve_dtype
from colossal_lang.io.error_text import first_line
from colossal_lang.io.hf_folders import check_model_folder
from colossal_lang.io.tokenizer_files import load_hf_tokenizer

# Added when a folder has no config.json: a training checkpoint's tag folder is a common mistake.
CHECKPOINT_HINT = "; for a training checkpoint pass its final/ folder"


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


def load_model_and_tokenizer(
    model_path, device: Optional[str] = None, dtype: str = "auto", tokenizer_path=None
) -> Tuple[torch.nn.Module, object]:
    """Load `AutoModelForCausalLM` + `AutoTokenizer` from local folders, in eval mode on `device`."""
    path = check_model_folder(model_path, hint=CHECKPOINT_HINT)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    tokenizer = load_hf_tokenizer(tokenizer_path or path)
    model = load_causal_lm(path, torch_dtype)
    model.to(torch_device)
    model.eval()
    return model, tokenizer
