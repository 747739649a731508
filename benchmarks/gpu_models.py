"""Models and data for benchmarks/gpu_check.py: built from configs with random weights where weights cannot travel.

Random weights keep tokens/s, MFU and memory valid (they depend on shapes only); loss values are not comparable
with a pretrained model's.
"""

from __future__ import annotations

from pathlib import Path


def random_model_from_config(config_dir: Path, out: Path) -> Path:
    """A LLaMA-family model with the config and tokenizer in `config_dir` (e.g. SmolLM2's) and random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if (out / "config.json").is_file():
        return out
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(config_dir).save_pretrained(out)
    return out


def one_b_model(out: Path, tokenizer_dir: Path) -> Path:
    """A TinyLlama-shaped model (22 layers, d 2048, GQA 32/4 heads, SwiGLU 5632) over SmolLM2's vocabulary."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (out / "config.json").is_file():
        return out
    config = LlamaConfig(vocab_size=49152, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                         num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=4096,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=2,
                         torch_dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # random init of 1.1B is slow on CPU
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def packed_dataset(out: Path, tokenizer_dir: Path, seq_length: int) -> Path:
    """Czech and English LibreOffice help packed into `seq_length` rows for document-causal attention."""
    from transformers import AutoTokenizer

    from colossal_lang.testing.prepared import read_texts, write_prepared_dataset

    if (out / "manifest.json").is_file():
        return out
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    texts = {"cs": read_texts("cs/libreoffice_help.jsonl", 100000), "en": read_texts("en/libreoffice_help.jsonl", 100000)}
    return write_prepared_dataset(out, tokenizer, texts, max_length=seq_length)
