"""Tiny LLaMA models over SmolLM2's real vocabulary, for results that can be computed by hand."""

from __future__ import annotations

import pytest
import torch


def tiny_llama(vocab_size: int, seed: int = 0):
    """A 2-layer, 16-wide LlamaForCausalLM with random weights (fast enough for brute-force checks)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512, tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


def prefer_tokens(model, token_ids, strength: float = 8.0):
    """Make `model` give `token_ids` a logit of `strength` (every other token 0) at every position.

    Blocks add nothing to the residual stream (o_proj and down_proj zeroed), and every embedding is the
    same one-hot vector on dimension 0, so the final hidden state is a constant vector on dimension 0;
    lm_head then reads the wanted logits off that dimension.
    """
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight.zero_()
        hidden_size = model.config.hidden_size
        # RMSNorm of a one-hot vector is sqrt(hidden_size) on that dimension.
        model.lm_head.weight[list(token_ids), 0] = strength / hidden_size**0.5
    return model


@pytest.fixture()
def tiny_model(smollm2_tokenizer):
    return tiny_llama(len(smollm2_tokenizer))


@pytest.fixture()
def uniform_model(smollm2_tokenizer):
    """Every next-token distribution is uniform over the vocabulary: nll per token is exactly ln(V)."""
    model = tiny_llama(len(smollm2_tokenizer))
    with torch.no_grad():
        model.lm_head.weight.zero_()
    return model


@pytest.fixture()
def preferring_model(smollm2_tokenizer):
    """A factory: `preferring_model([token ids])` is a tiny model that always prefers those tokens."""
    return lambda token_ids: prefer_tokens(tiny_llama(len(smollm2_tokenizer)), token_ids)
