"""Setting a run up: checks, launch, plugin, model, data, optimizer and schedule, resume; the Run holds it all.

The order matters: what can be refused is refused before any process group or model exists; the model is built
on every rank with one seed; resuming comes after boosting (the booster loads into its wrappers).
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Optional

import torch
import torch.distributed as dist

from colossal_lang.data.arrow_output import tokenizer_hash
from colossal_lang.data.loader import load_prepared_dataset
from colossal_lang.io.models import load_model_config
from colossal_lang.io.tokenizer_files import load_hf_tokenizer
from colossal_lang.training import adaptation, boosted, checkpoint, nodes, plugins, setup, stages
from colossal_lang.training.checkpointer import Checkpointer
from colossal_lang.training.config import TrainConfig, write_config_file
from colossal_lang.training.launch import SaveDirLock, die_with_launcher, single_process_defaults
from colossal_lang.training.metrics import StepLogger
from colossal_lang.training.optim import build_optimizer, build_scheduler, parameter_groups
from colossal_lang.training.spike_guard import SpikeGuard
from colossal_lang.training.stages import StagedParameters
from colossal_lang.training.step import StepContext
from colossal_lang.training.train_step import NewRows


def log(message: str) -> None:
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(message, flush=True)


@dataclass
class Position:
    """Where the run is: epoch, samples consumed in it, optimizer steps done, tokens trained per category."""
    epoch: int = 0
    consumed: int = 0
    step: int = 0
    tokens_seen: dict = field(default_factory=dict)


@dataclass
class Run:
    config: TrainConfig
    traits: plugins.PluginTraits
    booster: object
    step_context: StepContext
    lr_scheduler: object
    loader: object
    sampler: object
    guard: SpikeGuard
    checkpointer: Checkpointer
    metrics: Optional[StepLogger]
    new_rows: NewRows
    position: Position
    total_steps: int
    stop_at: int
    max_epochs: float
    world_size: int
    dp_size: int
    lock: Optional[SaveDirLock]
    staged: Optional[StagedParameters] = None

    @property
    def schedule(self):
        return self.lr_scheduler.lr_lambdas[0]

    def running_states(self, reason: str) -> dict:
        at = self.position
        return {"consumed_samples": at.consumed, "sample_start_index": at.consumed, "world_size": self.world_size,
                "dp_size": self.dp_size, "global_batch_size": self.sampler.global_batch_size,
                "total_steps": self.total_steps, "sampler": self.sampler.state_dict(at.consumed),
                "spike_guard": self.guard.state_dict(), "tokens_seen": at.tokens_seen,
                "config": self.config.flat(), "reason": reason}


def launch(config: TrainConfig) -> Optional[SaveDirLock]:
    """Start the process group (after everything refusable was refused); rank 0 takes the save_dir lock."""
    import colossalai

    die_with_launcher()
    if not dist.is_initialized():  # (tests run several single-process trainings in one interpreter)
        single_process_defaults()
        colossalai.launch_from_torch(seed=config.optim.seed, verbose=False)
    save_dir = config.checkpoint.save_dir
    nodes.check_save_dir_shared(save_dir)
    held = []  # rank 0's lock (the file handle stays on rank 0; every rank gets its InputError if the lock is taken)
    nodes.decided_by_rank0(lambda: held.append(SaveDirLock(save_dir).acquire()))
    if dist.get_rank() == 0:
        checkpoint.clear_staging(save_dir)  # only now: staging folders of a live run are not ours to clear
        if config.checkpoint.config_file:
            write_config_file(config, config.checkpoint.config_file)
    for note in config.notes:
        log(note)
    return held[0] if held else None


def build_run(config: TrainConfig) -> Run:
    """Everything refusable is refused first (no process group yet), then the process group and the lock."""
    hf_config = load_model_config(config.model.pretrained)
    plugins.check_plugin(config, int(os.environ.get("WORLD_SIZE", "1")), hf_config)
    prepared = load_prepared_dataset(config.data.dataset)
    setup.check_max_length(config.data, prepared)
    tokenizer = load_hf_tokenizer(config.model.tokenizer_dir)
    lock = launch(config)
    try:
        return assemble_run(config, hf_config, prepared, tokenizer, lock)
    except BaseException:
        if lock is not None:  # (several runs may share one interpreter: the next must find save_dir free)
            lock.release()
        raise


def assemble_run(config: TrainConfig, hf_config, prepared, tokenizer, lock: Optional[SaveDirLock]) -> Run:
    from colossalai.accelerator import get_accelerator
    from colossalai.booster import Booster
    from transformers import set_seed

    rank, world_size = dist.get_rank(), dist.get_world_size()
    if prepared.tokenizer_hash and prepared.tokenizer_hash != tokenizer_hash(config.model.tokenizer_dir):
        # A warning, not an error: re-saving an identical tokenizer can change its files' bytes. Token ids
        # beyond the embeddings are refused at the first step.
        log(f"warning: the dataset was tokenized with another tokenizer than {config.model.tokenizer_dir} (manifest hash differs)")
    plugin, traits = plugins.make_plugin(config)
    booster = Booster(plugin=plugin, mixed_precision=traits.booster_mixed_precision)
    dp_size, dp_rank = plugins.data_parallel_info(plugin, traits, world_size, rank)
    device = get_accelerator().get_current_device()

    set_seed(config.optim.seed)  # identical initialisation of anything random on every rank
    parts = setup.build_model(config.model, config.adaptation, traits, hf_config)
    model = parts.model
    if config.adaptation.lora_rank:
        model = booster.enable_lora(model, lora_config=adaptation.lora_config(config.adaptation, parts.vocabulary_grew))
    trainable, total_params = adaptation.count_trainable(model)
    reference = setup.build_reference(config.model, config.adaptation, config.parallel.mixed_precision, device)
    pad_id = setup.pad_token_id(config.data, tokenizer, config.model.tokenizer_dir)
    attention = setup.collator_attention(config.model, prepared, traits)
    loader, sampler = setup.build_loader(config.data, prepared, pad_id, attention,
                                         setup.padding_multiple(config.data, prepared, traits), dp_size, dp_rank,
                                         config.optim.seed, setup.mask_dtype(hf_config, traits))
    # --max_steps sets the run's length (cycling through epochs as needed); otherwise --num_epochs does.
    optim = config.optim
    total_steps = optim.max_steps or sampler.steps_per_epoch * optim.num_epochs
    staged = build_stages(config, model, parts.new_token_start)
    exempt = parts.new_row_matrices + (staged.embedding_matrices if staged else [])  # decayed by hand, by row
    groups = parameter_groups(model, optim.weight_decay, no_decay_params=exempt)
    optimizer = build_optimizer(optim, groups)
    lr_scheduler = build_scheduler(optim, optimizer, total_steps)
    model, optimizer, _, _, lr_scheduler = booster.boost(model, optimizer, lr_scheduler=lr_scheduler)
    if config.adaptation.use_neft:
        # On the embedding module the boosted model runs: shardformer (3d) replaces embed_tokens by a new module,
        # and LoRA's modules_to_save runs a copy of it; a hook on the original would never fire.
        adaptation.enable_neftune(boosted.user_module(model), config.adaptation.neft_alpha)

    guard = SpikeGuard(config.guard.spike_window, config.guard.spike_factor, config.guard.spike_min_history,
                       config.guard.spike_rollback_after)
    context = StepContext(
        booster=booster, model=model, optimizer=optimizer, device=device, traits=traits,
        autocast=partial(torch.autocast, device.type, dtype=traits.autocast_dtype) if traits.autocast_dtype else nullcontext,
        dp_size=dp_size, dp_group=plugin.dp_group if traits.model_parallel else None,
        pp_group=plugin.pp_group if traits.pipeline else None,
        categories=prepared.categories, reference=reference, kl_coef=config.adaptation.kl_coef,
        kl_categories=set(config.adaptation.kl_categories) if config.adaptation.kl_categories else None,
        original_vocab_size=parts.original_vocab_size,
        num_microbatches=max(1, config.data.batch_size // config.parallel.microbatch_size) if traits.pipeline else 1,
        vocab_rows=hf_config.vocab_size,
    )
    run = Run(config=config, traits=traits, booster=booster, step_context=context, lr_scheduler=lr_scheduler,
              loader=loader, sampler=sampler, guard=guard, checkpointer=None, metrics=None,
              new_rows=NewRows(parts.new_row_matrices, parts.new_token_start, optim.weight_decay),
              position=Position(), total_steps=total_steps, stop_at=total_steps,
              max_epochs=math.inf if optim.max_steps else optim.num_epochs, world_size=world_size, dp_size=dp_size,
              lock=lock, staged=staged)
    run.checkpointer = Checkpointer(config.checkpoint, booster, model, optimizer, lr_scheduler, tokenizer, guard,
                                    run.running_states, log)
    resume(run, dp_rank, hf_config)
    run.metrics = StepLogger(config.logging, run.total_steps, run.position.step, rank == 0, hf_config, total_params,
                             world_size, config.parallel.mixed_precision, run.position.tokens_seen, log)
    log(f"plugin {traits.name} · {world_size} processes ({dp_size} data-parallel) · {len(prepared.dataset)} sequences · "
        f"{sampler.steps_per_epoch} steps/epoch · {run.total_steps} steps · global batch {sampler.global_batch_size} · "
        f"{trainable:,}/{total_params:,} parameters train · attention {attention} · "
        f"data order {'stored (curriculum)' if prepared.curriculum else 'shuffled per epoch'}")
    if sampler.samples_per_epoch < len(prepared.dataset):
        log(f"each epoch drops its last {len(prepared.dataset) - sampler.samples_per_epoch} sequences (less than a global batch)")
    return run


def build_stages(config: TrainConfig, model, new_token_start) -> Optional[StagedParameters]:
    if config.adaptation.stages is None:
        return None
    return stages.staged_parameters(model, stages.parse_stages(config.adaptation.stages), new_token_start,
                                    config.optim.weight_decay, adaptation.embedding_matrices(model))


def resume(run: Run, dp_rank: int, hf_config) -> None:
    """A full checkpoint restores the position (weights-only loading leaves it at the start: a new stage)."""
    from transformers import set_seed

    states = run.checkpointer.resume(hf_config)
    if states is not None:
        at = run.position
        at.epoch, at.consumed, at.step = states["epoch"], states["consumed_samples"], states["step"]
        at.tokens_seen = states.get("tokens_seen", {})
        warning = run.sampler.follow_saved_layout(states.get("sampler", {}), at.epoch, at.consumed)
        if warning:
            log(f"warning: {warning}")
        if not states["rng_restored"]:
            # Another world size: fresh, still reproducible streams; one per data-parallel rank, so that the ranks
            # of one tensor/pipeline/sequence group (same dp rank) keep drawing the same numbers (NEFTune noise).
            set_seed(run.config.optim.seed + 1000 * at.step + dp_rank)
        log(f"resumed from {states['path']}: epoch {at.epoch}, step {at.step}, {at.consumed} samples into the epoch")
    run.total_steps = run.schedule.total_steps  # a resumed schedule keeps its length
    if run.staged is not None:
        stages.check_stages_cover(run.staged.stages, run.total_steps)
    stop = run.config.optim.stop_at_step
    run.stop_at = min(run.total_steps, stop) if stop else run.total_steps
