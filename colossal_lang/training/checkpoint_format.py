"""Checkpoints: Colossal-LLaMA's layout plus RNG states, data position, config and tokenizer; written atomically.

save_dir/epoch-<e>_step-<s>/{modeling, optimizer, lr_scheduler/, rng/, tokenizer/, running_states.json, COMPLETE}

Everything is written into `save_dir/.staging-<tag>`; rank 0 writes COMPLETE last, fsyncs, and renames the
folder into place. A crash (or a full disk) mid-save leaves only a staging folder, which is never resumed
from and is cleared on the next start, so the previous checkpoint stays the latest usable one.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist

from colossal_lang.errors import InputError
from colossal_lang.io.atomic_folder import fsync_tree, replace_folder
from colossal_lang.testing import faults
from colossal_lang.training import boosted

COMPLETE = "COMPLETE"
RUNNING_STATES = "running_states.json"
STAGING_PREFIX = ".staging-"
UNSHARDED_OPTIMIZER = "optimizer.bin"
TAG = re.compile(r"^epoch-(\d+)_step-(\d+)$")


def checkpoint_tag(epoch: int, step: int) -> str:
    return f"epoch-{epoch}_step-{step}"


def complete_checkpoints(save_dir) -> list[Path]:
    """Complete checkpoint folders under save_dir, oldest first (by global step)."""
    save_dir = Path(save_dir)
    if not save_dir.is_dir():
        return []
    found = []
    for folder in save_dir.iterdir():
        match = TAG.match(folder.name)
        if match and folder.is_dir() and (folder / COMPLETE).is_file():
            found.append((int(match.group(2)), folder))
    return [folder for _, folder in sorted(found)]


def latest_checkpoint(save_dir) -> Optional[Path]:
    found = complete_checkpoints(save_dir)
    return found[-1] if found else None


def clear_staging(save_dir) -> None:
    """Remove half-written checkpoints left by a crash (rank 0, before training starts)."""
    save_dir = Path(save_dir)
    if save_dir.is_dir():
        for folder in save_dir.glob(STAGING_PREFIX + "*"):
            shutil.rmtree(folder, ignore_errors=True)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def save_checkpoint(booster, model, optimizer, lr_scheduler, tokenizer, save_dir, epoch: int, step: int,
                    running_states: dict) -> Path:
    """Write a complete checkpoint for global step `step` and return its folder (every rank calls this)."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    tag = checkpoint_tag(epoch, step)
    save_dir = Path(save_dir)
    staging = save_dir / (STAGING_PREFIX + tag)
    final = save_dir / tag
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "rng").mkdir(parents=True)
        (staging / "lr_scheduler").mkdir()
        (staging / "optimizer").mkdir()  # sharded (CUDA) or one file (CPU): made here, not by every rank
    barrier()
    booster.save_model(model, str(staging / "modeling"), shard=True)  # .bin shards: safetensors refuses tied weights
    faults.trigger("save_disk_full", step, rank)  # (tests: a disk filling up, or a SIGKILL, mid-save)
    faults.trigger("save_kill", step, rank)
    if torch.cuda.is_available():
        booster.save_optimizer(optimizer, str(staging / "optimizer"), shard=True)
    else:
        # Colossal-AI 0.5.0 cannot load *sharded* optimizer states on CPU (load_states_into_optimizer calls
        # CpuAccelerator.synchronize, which raises), so on CPU the states go into one file inside optimizer/.
        booster.save_optimizer(optimizer, str(staging / "optimizer" / UNSHARDED_OPTIMIZER), shard=False)
    booster.save_lr_scheduler(lr_scheduler, str(staging / "lr_scheduler" / "lr_scheduler.pt"))
    torch.save(rng_state(), staging / "rng" / f"rank-{rank}.pt")
    barrier()
    if rank == 0:
        tokenizer.save_pretrained(staging / "tokenizer")
        states = dict(running_states, epoch=epoch, step=step, rng_states="rng")
        (staging / RUNNING_STATES).write_text(json.dumps(states, indent=2, default=str) + "\n", encoding="utf-8")
        (staging / COMPLETE).write_text(f"{tag}\n", encoding="utf-8")
        fsync_tree(staging)
        replace_folder(staging, final)
    barrier()
    return final


def remove_old_checkpoints(save_dir, keep_last: int) -> None:
    """Keep the newest `keep_last` complete checkpoints (rank 0; 0 keeps all)."""
    if keep_last <= 0:
        return
    for old in complete_checkpoints(save_dir)[:-keep_last]:
        # The marker goes first: a removal cut short never leaves a checkpoint that looks complete.
        (old / COMPLETE).unlink(missing_ok=True)
        shutil.rmtree(old, ignore_errors=True)


def resolve_load_path(load_checkpoint: str, save_dir) -> Optional[Path]:
    """'latest' → newest complete checkpoint in save_dir (None if there is none yet); a path → itself, checked."""
    if load_checkpoint == "latest":
        return latest_checkpoint(save_dir)
    path = Path(load_checkpoint)
    if not path.exists():
        raise InputError("checkpoint not found", path)
    if is_weights_only(path):
        return path
    if not (path / COMPLETE).is_file():
        raise InputError("checkpoint is incomplete (no COMPLETE marker): a save was interrupted", path)
    return path


def is_weights_only(path: Path) -> bool:
    """A `modeling` folder (or a bare weights folder) rather than a whole checkpoint."""
    return not (path / RUNNING_STATES).is_file()


WEIGHT_INDEX_FILES = ("pytorch_model.bin.index.json", "model.safetensors.index.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def saved_weight_names(path: Path) -> set:
    """The parameter names a weights folder holds, read from its index, else from its single weights file."""
    for name in WEIGHT_INDEX_FILES:
        if (path / name).is_file():
            try:
                return set(json.loads((path / name).read_text(encoding="utf-8"))["weight_map"])
            except (ValueError, KeyError, TypeError) as error:
                raise InputError(f"not a weights index (no readable weight_map): {error}", path / name) from None
    try:
        if (path / WEIGHT_FILES[0]).is_file():
            from safetensors import safe_open

            with safe_open(str(path / WEIGHT_FILES[0]), framework="pt") as weights:
                return set(weights.keys())
        if (path / WEIGHT_FILES[1]).is_file():
            return set(torch.load(path / WEIGHT_FILES[1], map_location="cpu", weights_only=True, mmap=True))
    except MemoryError:
        raise
    except Exception as error:  # a truncated or corrupt weights file
        raise InputError(f"cannot read the weights: {type(error).__name__}: {str(error).strip()[:200]}", path) from None
    raise InputError(f"no model weights here (none of {', '.join(WEIGHT_INDEX_FILES + WEIGHT_FILES)})", path)


def is_lora_adapter(name: str) -> bool:
    return ".lora_" in name  # lora_A / lora_B / lora_embedding_*: new adapters start from their own init


def check_weight_names(expected: set, saved: set, path: Path, tied: bool) -> None:
    """InputError naming `path` when the folder lacks a weight the model has, or holds one it does not.

    A tied lm_head.weight may be absent (save_pretrained drops it; it is the embedding matrix).
    """
    missing = {n for n in expected - saved if not is_lora_adapter(n) and not (tied and n == "lm_head.weight")}
    unexpected = {n for n in saved - expected if not is_lora_adapter(n)}
    for names, problem in ((missing, "lacks weights the model has"), (unexpected, "holds weights the model does not have")):
        if names:
            shown = ", ".join(sorted(names)[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise InputError(f"weights-only loading refused: the folder {problem} ({len(names)}: {shown})", path)


def load_weights(booster, model, path: Path, tied: bool) -> None:
    """Weights only from a `modeling` (or Hugging Face) folder; refused unless its names match the model's.

    `tied`: the config ties the LM head to the input embeddings (asked of the config, not of storage: Gemini frees
    the storage of parameters it holds in chunks, so data pointers say nothing there).
    """
    state = model.unwrap().state_dict()  # what the checkpoint IO loads into (LoRA: base names plus adapters)
    tied = tied and "lm_head.weight" in state
    check_weight_names(set(state), saved_weight_names(Path(path)), Path(path), tied)
    booster.load_model(model, str(path), strict=False)  # names checked above; a tied lm_head may be absent


def load_checkpoint(booster, model, optimizer, lr_scheduler, path: Path) -> dict:
    """Restore model, optimizer, scheduler and this rank's RNG; return running_states (with 'rng_restored')."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    booster.load_model(model, str(path / "modeling"))
    optimizer_path = path / "optimizer"
    if (optimizer_path / UNSHARDED_OPTIMIZER).is_file():
        optimizer_path = optimizer_path / UNSHARDED_OPTIMIZER
    booster.load_optimizer(optimizer, str(optimizer_path))
    scheduler_path = path / "lr_scheduler"
    if scheduler_path.is_dir():
        scheduler_path = scheduler_path / "lr_scheduler.pt"
    booster.load_lr_scheduler(lr_scheduler, str(scheduler_path))
    states = json.loads((path / RUNNING_STATES).read_text(encoding="utf-8"))
    rng_file = path / states.get("rng_states", "rng") / f"rank-{rank}.pt"
    same_world = states.get("world_size") == (dist.get_world_size() if dist.is_initialized() else 1)
    states["rng_restored"] = bool(same_world and rng_file.is_file())
    if states["rng_restored"]:
        set_rng_state(torch.load(rng_file, weights_only=False))
    return states


def untie_if_trained_apart(module) -> None:
    """LoRA with modules_to_save trains separate copies of a tied model's embeddings and head; after the merge they
    are two different matrices, but a config that still says tied would make from_pretrained overwrite the trained
    head with the embeddings. Such a model is saved untied, so that the folder computes what was trained."""
    inputs, outputs = module.get_input_embeddings(), module.get_output_embeddings()
    config = module.config.get_text_config(decoder=True)
    if outputs is None or not getattr(config, "tie_word_embeddings", False) or outputs.weight is inputs.weight:
        return
    config.tie_word_embeddings = False
    if config is not module.config and hasattr(module.config, "tie_word_embeddings"):
        module.config.tie_word_embeddings = False


def save_final_model(booster, model, tokenizer, save_dir, shards_model: bool, merge_lora: bool = False) -> Path:
    """save_dir/final: a Hugging Face folder (weights, config, tokenizer) that needs no project code to load."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    save_dir = Path(save_dir)
    final = save_dir / "final"
    staging = save_dir / (STAGING_PREFIX + "final")
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier()
    if not shards_model or merge_lora:  # LoRA runs (ddp, ZeRO-2) hold the whole model on every rank
        if rank == 0:
            module = boosted.user_module(model)  # (ddp + fp16 nests wrappers; PEFT kept for the merge)
            if merge_lora:
                module = module.merge_and_unload()
                untie_if_trained_apart(module)
            module.save_pretrained(staging, safe_serialization=True)
    else:  # sharded plugins gather through the booster (.bin shards: safetensors refuses tied weights)
        booster.save_model(model, str(staging), shard=True)
        if rank == 0:
            model.unwrap().config.save_pretrained(staging)
    barrier()
    if rank == 0:
        tokenizer.save_pretrained(staging)
        fsync_tree(staging)
        replace_folder(staging, final)
    barrier()
    return final
