"""Building what the loop needs: model (attention, precision, checkpointing, adaptation), data loader, reference."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch.utils.data import DataLoader

from colossal_lang.data.loader import IndexedRows, PackedCollator, PreparedDataset, ResumableSampler
from colossal_lang.errors import InputError
from colossal_lang.io.dtypes import PRECISION_DTYPES as DTYPES
from colossal_lang.io.models import load_causal_lm, load_model_config
from colossal_lang.training import adaptation, plugins



def attention_implementation(args) -> str:
    return "flash_attention_2" if args.use_flash_attn else "sdpa"


def parameter_dtype(args) -> torch.dtype:
    """ddp keeps fp32 master weights and autocasts; the other plugins cast the model themselves."""
    return torch.float32 if args.plugin == "ddp" else DTYPES[args.mixed_precision]


def load_training_lm(path, args, dtype: torch.dtype):
    return load_causal_lm(path, dtype, attn_implementation=attention_implementation(args))


@dataclass
class ModelParts:
    model: torch.nn.Module
    new_row_matrices: list  # embedding/head matrices under --train_new_rows_only (else empty)
    new_token_start: Optional[int]
    original_vocab_size: int
    vocabulary_grew: bool


def original_vocab_size(args, model_config) -> int:
    """Rows of the original model: the reference model's vocabulary, else --new_token_start, else the model's."""
    if args.reference_model:
        return load_model_config(args.reference_model).vocab_size
    if args.new_token_start:
        return args.new_token_start
    return model_config.vocab_size


def build_model(args: argparse.Namespace, model_config) -> ModelParts:
    model = load_training_lm(args.pretrained, args, parameter_dtype(args))
    vocab_rows = model.get_input_embeddings().weight.shape[0]
    original_rows = original_vocab_size(args, model_config)
    new_token_start = args.new_token_start or (original_rows if args.reference_model else None)
    if args.use_grad_checkpoint:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    matrices = []
    if args.freeze_non_embeds_params:
        adaptation.freeze_non_embeddings(model)
    elif args.train_new_rows_only:
        if new_token_start is None or new_token_start >= vocab_rows:
            raise InputError("--train_new_rows_only needs --new_token_start (or --reference_model) below the "
                             f"{vocab_rows} embedding rows (got {new_token_start})")
        matrices = adaptation.train_new_rows_only(model, new_token_start)
    # NEFTune is hooked in after boosting (loop.py), on the embedding module the boosted model runs.
    return ModelParts(model, matrices, new_token_start, min(original_rows, vocab_rows), vocab_rows > original_rows)


def build_reference(args, device) -> Optional[torch.nn.Module]:
    if args.kl_coef <= 0:
        return None
    dtype = torch.float32 if args.mixed_precision == "fp32" else DTYPES[args.mixed_precision]
    reference = load_training_lm(args.reference_model or args.pretrained, args, dtype)
    reference.requires_grad_(False)
    return reference.eval().to(device)


def collator_attention(args, prepared: PreparedDataset) -> str:
    packing = prepared.packing if args.attention == "auto" else args.attention
    if packing == "causal" or args.plugin == "3d":  # shardformer builds its own masks from a 2D one
        return "causal"
    return "position_ids_only" if args.use_flash_attn else "doc_causal"


def build_loader(args, prepared: PreparedDataset, tokenizer, dp_size: int, dp_rank: int):
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise InputError("the tokenizer has neither a pad nor an eos token", args.tokenizer_dir)
    sampler = ResumableSampler(len(prepared.dataset), dp_size, dp_rank, args.seed,
                               global_batch_size=args.batch_size * dp_size * args.accumulation_steps,
                               shuffle=not prepared.curriculum,  # a curriculum's order is the point of it
                               bucket_sizes=prepared.bucket_sizes)  # buckets (arrow parts) are read in order
    if sampler.steps_per_epoch == 0:
        raise InputError(f"the dataset has {len(prepared.dataset)} rows, fewer than one global batch "
                         f"({sampler.global_batch_size} = batch_size x data-parallel ranks x accumulation_steps)")
    # A bool 4D mask suits SDPA under any compute dtype (autocast included).
    multiple = math.lcm(8 if torch.cuda.is_available() else 1, plugins.sequence_multiple(args))
    collator = PackedCollator(pad_id, collator_attention(args, prepared), mask_dtype=torch.bool,
                              pad_to_multiple_of=multiple)
    loader = DataLoader(IndexedRows(prepared.dataset), batch_size=args.batch_size, sampler=sampler, collate_fn=collator,
                        num_workers=args.num_workers, drop_last=True, pin_memory=torch.cuda.is_available(),
                        generator=torch.Generator().manual_seed(args.seed))  # keeps the global RNG stream for the model
    return loader, sampler
