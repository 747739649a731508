"""Building what the loop needs: model (attention, precision, checkpointing, adaptation), data loader, reference.

Each builder takes its own configuration group and the plugin's traits, never the whole configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch.utils.data import DataLoader

from colossal_lang.data.loader import IndexedRows, PackedCollator, PreparedDataset, ResumableSampler
from colossal_lang.errors import InputError
from colossal_lang.io.models import load_causal_lm, load_model_config
from colossal_lang.training import adaptation as adapt
from colossal_lang.training.config import AdaptationConfig, DataConfig, ModelConfig
from colossal_lang.training.plugins import DTYPES, PluginTraits


def attention_implementation(model_config: ModelConfig) -> str:
    return "flash_attention_2" if model_config.use_flash_attn else "sdpa"


def load_training_lm(path, model_config: ModelConfig, dtype: torch.dtype):
    return load_causal_lm(path, dtype, attn_implementation=attention_implementation(model_config))


@dataclass
class ModelParts:
    model: torch.nn.Module
    new_token_start: Optional[int]
    original_vocab_size: int
    vocabulary_grew: bool


def original_vocab_size(adaptation: AdaptationConfig, hf_config) -> int:
    """Rows of the original model: the reference model's vocabulary, else --new_token_start, else the model's."""
    if adaptation.reference_model:
        return load_model_config(adaptation.reference_model).vocab_size
    if adaptation.new_token_start:
        return adaptation.new_token_start
    return hf_config.vocab_size


def build_model(model_config: ModelConfig, adaptation: AdaptationConfig, traits: PluginTraits, hf_config) -> ModelParts:
    model = load_training_lm(model_config.pretrained, model_config, traits.param_dtype)
    vocab_rows = model.get_input_embeddings().weight.shape[0]
    original_rows = original_vocab_size(adaptation, hf_config)
    new_token_start = adaptation.new_token_start or (original_rows if adaptation.reference_model else None)
    if model_config.use_grad_checkpoint:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if adaptation.freeze_non_embeds_params or adaptation.train_new_rows_only:
        adapt.freeze_non_embeddings(model)  # --train_new_rows_only masks the old rows too: a new_rows stage
    # NEFTune is hooked in after boosting (run.py), on the embedding module the boosted model runs.
    return ModelParts(model, new_token_start, min(original_rows, vocab_rows), vocab_rows > original_rows)


def build_reference(model_config: ModelConfig, adaptation: AdaptationConfig, precision: str, device) -> Optional[torch.nn.Module]:
    if adaptation.kl_coef <= 0:
        return None
    reference = load_training_lm(adaptation.reference_model or model_config.pretrained, model_config, DTYPES[precision])
    reference.requires_grad_(False)
    return reference.eval().to(device)


def collator_attention(model_config: ModelConfig, prepared: PreparedDataset, traits: PluginTraits) -> str:
    packing = prepared.packing if model_config.attention == "auto" else model_config.attention
    if packing == "causal" or traits.model_parallel:  # shardformer builds its own masks from a 2D one
        return "causal"
    return "position_ids_only" if model_config.use_flash_attn else "doc_causal"


def check_max_length(data: DataConfig, prepared: PreparedDataset) -> None:
    """Colossal-LLaMA's --max_length: a dataset prepared for longer sequences than it allows is refused."""
    if data.max_length is not None and prepared.max_length is not None and prepared.max_length > data.max_length:
        raise InputError(f"the dataset was prepared with max_length {prepared.max_length}, longer than --max_length "
                         f"{data.max_length}: prepare it again with --max_length {data.max_length}, or raise --max_length")


def pad_token_id(data: DataConfig, tokenizer, tokenizer_dir) -> int:
    """--pad_token eos|unk sets the tokenizer's pad token (saved with checkpoints); default: its pad, else eos."""
    if data.pad_token is not None:
        token = tokenizer.eos_token if data.pad_token == "eos" else tokenizer.unk_token
        if token is None:
            raise InputError(f"--pad_token {data.pad_token}: the tokenizer has no {data.pad_token} token", tokenizer_dir)
        tokenizer.pad_token = token
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise InputError("the tokenizer has neither a pad nor an eos token", tokenizer_dir)
    return pad_id


def padding_multiple(data: DataConfig, prepared: PreparedDataset, traits: PluginTraits) -> int:
    """Batches are padded to a multiple of this: 8 on CUDA (tensor cores), the SP split, and under
    --padding_mode max_length the run's length, so that every batch is exactly that long."""
    multiple = math.lcm(8 if torch.cuda.is_available() else 1, traits.sequence_multiple)
    if data.padding_mode == "max_length":
        length = data.max_length or prepared.max_length
        if length is None:
            raise InputError("--padding_mode max_length needs --max_length (the dataset's manifest has none)")
        multiple = math.lcm(multiple, length)
    return multiple


# Decoder layers that add a sliding window to the 4D mask with torch.finfo(mask.dtype) (transformers 4.51.3
# modeling_gemma3.py:398, modeling_gemma2.py likewise): they need an additive float mask, not a bool one.
ADDITIVE_MASK_MODEL_TYPES = ("gemma2", "gemma3", "gemma3_text")


def mask_dtype(hf_config, traits: PluginTraits) -> torch.dtype:
    """A bool 4D mask suits SDPA under any compute dtype; sliding-window Gemma layers get an additive mask in
    the dtype their attention computes in (autocast's, else the parameters')."""
    model_type = getattr(getattr(hf_config, "text_config", None) or hf_config, "model_type", "")
    if model_type in ADDITIVE_MASK_MODEL_TYPES:
        return traits.autocast_dtype or traits.param_dtype
    return torch.bool


def build_loader(data: DataConfig, prepared: PreparedDataset, pad_id: int, attention: str, multiple: int,
                 dp_size: int, dp_rank: int, seed: int, attention_mask_dtype: torch.dtype = torch.bool):
    sampler = ResumableSampler(len(prepared.dataset), dp_size, dp_rank, seed,
                               global_batch_size=data.batch_size * dp_size * data.accumulation_steps,
                               shuffle=not prepared.curriculum,  # a curriculum's order is the point of it
                               bucket_sizes=prepared.bucket_sizes)  # buckets (arrow parts) are read in order
    if sampler.steps_per_epoch == 0:
        raise InputError(f"the dataset has {len(prepared.dataset)} rows, fewer than one global batch "
                         f"({sampler.global_batch_size} = batch_size x data-parallel ranks x accumulation_steps)")
    collator = PackedCollator(pad_id, attention, mask_dtype=attention_mask_dtype, pad_to_multiple_of=multiple)
    loader = DataLoader(IndexedRows(prepared.dataset), batch_size=data.batch_size, sampler=sampler, collate_fn=collator,
                        num_workers=data.num_workers, drop_last=True, pin_memory=torch.cuda.is_available(),
                        generator=torch.Generator().manual_seed(seed))  # keeps the global RNG stream for the model
    return loader, sampler

