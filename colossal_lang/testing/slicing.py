"""Cut a real model down to its first few decoder layers: fast tests that still see real weights and vocabulary."""

from __future__ import annotations

from pathlib import Path


def slice_decoder_layers(model_dir, output_dir, num_layers: int = 2) -> Path:
    """Save a copy of the causal LM in `model_dir` keeping only its first `num_layers` decoder layers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    layers = model.model.layers
    if not 0 < num_layers <= len(layers):
        raise ValueError(f"num_layers must be in 1..{len(layers)}")
    model.model.layers = layers[:num_layers]
    model.config.num_hidden_layers = num_layers
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(output_dir)
    return output_dir
