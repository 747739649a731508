"""Setting a run up: checks, launch, plugin, model, data, optimizer and schedule, resume; the Run holds it all.

The order matters: what can be refused is refused before any process group or model exists; the model is built
on every rank with one seed; resuming comes after boosting (the booster loads into its wrappers); the Run is
built once, complete, after the resume has placed the position.
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
from colossal_lang.training import adaptation, boosted, builders, checkpoint_format, nodes, plugins, stages
from colossal_lang.training.checkpoint_policy import Checkpointer
from colossal_lang.training.config import TrainConfig, write_config_file
from colossal_lang.training.forward_backward import KLTerm, Ranks, StepContext
from colossal_lang.training.launch import SaveDirLock, die_with_launcher, single_process_defaults
from colossal_lang.training.metrics import StepLogger
from colossal_lang.training.optim import build_optimizer, build_scheduler, parameter_groups
from colossal_lang.training.spike_guard import SpikeGuard
from colossal_lang.training.train_step import Optimization


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


@dataclass(frozen=True)
class Run:
    """Everything the loop asks for; only `position` changes while the run goes."""
    config: TrainConfig
    traits: plugins.PluginTraits
    booster: object
    step_context: StepContext
    optimization: Optimization
    loader: object
    sampler: object
    checkpointer: Checkpointer
    metrics: StepLogger
    position: Position
    total_steps: int  # the schedule's length (a resumed run keeps the one it started with)
    stop_at: int  # the last step of this launch (--stop_at_step)
    max_epochs: float
    lock: Optional[SaveDirLock]

    @property
    def schedule(self):
        return self.optimization.lr_scheduler.lr_lambdas[0]


@dataclass(frozen=True)
class RunningStates:
    """What a checkpoint's running_states.json records of the run, for the reason it is saved."""
    config: TrainConfig
    position: Position
    sampler: object
    guard: SpikeGuard
    schedule: object
    world_size: int
    dp_size: int

    def __call__(self, reason: str) -> dict:
        at = self.position
        return {"consumed_samples": at.consumed, "sample_start_index": at.consumed, "world_size": self.world_size,
                "dp_size": self.dp_size, "global_batch_size": self.sampler.global_batch_size,
                "total_steps": self.schedule.total_steps, "sampler": self.sampler.state_dict(at.consumed),
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
        checkpoint_format.clear_staging(save_dir)  # only now: staging folders of a live run are not ours to clear
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
    builders.check_max_length(config.data, prepared)
    tokenizer = load_hf_tokenizer(config.model.tokenizer_dir)
    lock = launch(config)
    try:
        return assemble_run(config, hf_config, prepared, tokenizer, lock)
    except BaseException:
        if lock is not None:  # (several runs may share one interpreter: the next must find save_dir free)
            lock.release()
        raise


@dataclass(frozen=True)
class Boosted:
    """The plugin's wrapped objects, and what was decided on the way to them."""
    plugin: object
    traits: plugins.PluginTraits
    booster: object
    model: torch.nn.Module
    optimizer: object
    lr_scheduler: object
    staged: Optional[stages.StagedParameters]
    model_parts: builders.ModelParts
    trainable_params: int
    total_params: int


def boost(config: TrainConfig, hf_config, plugin, traits: plugins.PluginTraits, total_steps: int) -> Boosted:
    """Booster, model (LoRA, stages), optimizer and schedule, boosted; NEFTune on the boosted model."""
    from colossalai.booster import Booster
    from transformers import set_seed

    booster = Booster(plugin=plugin, mixed_precision=traits.booster_mixed_precision)
    set_seed(config.optim.seed)  # identical initialisation of anything random on every rank
    parts = builders.build_model(config.model, config.adaptation, traits, hf_config)
    model = parts.model
    if config.adaptation.lora_rank:
        model = booster.enable_lora(model, lora_config=adaptation.lora_config(config.adaptation, parts.vocabulary_grew))
    trainable, total_params = adaptation.count_trainable(model)
    staged = build_stages(config, model, parts.new_token_start)
    exempt = staged.embedding_matrices if staged else []  # decayed by hand, on the rows that learn
    optimizer = build_optimizer(config.optim, parameter_groups(model, config.optim.weight_decay, no_decay_params=exempt))
    lr_scheduler = build_scheduler(config.optim, optimizer, total_steps)
    model, optimizer, _, _, lr_scheduler = booster.boost(model, optimizer, lr_scheduler=lr_scheduler)
    if config.adaptation.use_neft:
        # On the embedding module the boosted model runs: shardformer (3d) replaces embed_tokens by a new module,
        # and LoRA's modules_to_save runs a copy of it; a hook on the original would never fire.
        adaptation.enable_neftune(boosted.user_module(model), config.adaptation.neft_alpha)
    return Boosted(plugin, traits, booster, model, optimizer, lr_scheduler, staged, parts, trainable, total_params)


def build_stages(config: TrainConfig, model, new_token_start) -> Optional[stages.StagedParameters]:
    """--stages, or --train_new_rows_only as one new_rows stage to the end; None when everything trains."""
    spec = config.adaptation.stages or ("new_rows" if config.adaptation.train_new_rows_only else None)
    if spec is None:
        return None
    return stages.staged_parameters(model, stages.parse_stages(spec), new_token_start, config.optim.weight_decay,
                                    adaptation.embedding_matrices(model))


def step_context(config: TrainConfig, hf_config, wrapped: Boosted, dp_size: int, categories, device) -> StepContext:
    traits, plugin = wrapped.traits, wrapped.plugin
    reference = builders.build_reference(config.model, config.adaptation, config.parallel.mixed_precision, device)
    kl = None
    if reference is not None:
        chosen = config.adaptation.kl_categories
        kl = KLTerm(reference, config.adaptation.kl_coef, frozenset(chosen) if chosen else None,
                    wrapped.model_parts.original_vocab_size)
    ranks = Ranks(dp_size=dp_size, dp_group=plugin.dp_group if traits.model_parallel else None,
                  pp_group=plugin.pp_group if traits.pipeline else None,
                  num_microbatches=max(1, config.data.batch_size // config.parallel.microbatch_size) if traits.pipeline else 1)
    autocast = partial(torch.autocast, device.type, dtype=traits.autocast_dtype) if traits.autocast_dtype else nullcontext
    return StepContext(booster=wrapped.booster, model=wrapped.model, optimizer=wrapped.optimizer, device=device,
                       traits=traits, autocast=autocast, ranks=ranks, categories=categories,
                       vocab_rows=hf_config.vocab_size, kl=kl)


def assemble_run(config: TrainConfig, hf_config, prepared, tokenizer, lock: Optional[SaveDirLock]) -> Run:
    from colossalai.accelerator import get_accelerator

    rank, world_size = dist.get_rank(), dist.get_world_size()
    if prepared.tokenizer_hash and prepared.tokenizer_hash != tokenizer_hash(config.model.tokenizer_dir):
        # A warning, not an error: re-saving an identical tokenizer can change its files' bytes. Token ids
        # beyond the embeddings are refused at the first step.
        log(f"warning: the dataset was tokenized with another tokenizer than {config.model.tokenizer_dir} (manifest hash differs)")
    plugin, traits = plugins.make_plugin(config)
    dp_size, dp_rank = plugins.data_parallel_info(plugin, traits, world_size, rank)
    loader, sampler, attention = data_for(config, prepared, tokenizer, hf_config, traits, dp_size, dp_rank)
    # --max_steps sets the run's length (cycling through epochs as needed); otherwise --num_epochs does.
    wrapped = boost(config, hf_config, plugin, traits,
                  config.optim.max_steps or sampler.steps_per_epoch * config.optim.num_epochs)
    context = step_context(config, hf_config, wrapped, dp_size, prepared.categories, get_accelerator().get_current_device())
    guard = SpikeGuard(config.guard.spike_window, config.guard.spike_factor, config.guard.spike_min_history,
                       config.guard.spike_rollback_after)
    position, schedule = Position(), wrapped.lr_scheduler.lr_lambdas[0]
    checkpointer = Checkpointer(config.checkpoint, wrapped.booster, wrapped.model, wrapped.optimizer, wrapped.lr_scheduler,
                                tokenizer, guard, RunningStates(config, position, sampler, guard, schedule, world_size,
                                                                dp_size), log)
    resume(config, checkpointer, position, sampler, dp_rank, hf_config)
    total_steps = schedule.total_steps  # a resumed schedule keeps its length
    if wrapped.staged is not None:
        stages.check_stages_cover(wrapped.staged.stages, total_steps)
    stop_at = min(total_steps, config.optim.stop_at_step) if config.optim.stop_at_step else total_steps
    metrics = StepLogger(config.logging, total_steps, position.step, rank == 0, hf_config, wrapped.total_params,
                         world_size, config.parallel.mixed_precision, position.tokens_seen, log)
    log_setup(wrapped, prepared, sampler, attention, world_size, dp_size, total_steps)
    return Run(config=config, traits=wrapped.traits, booster=wrapped.booster, step_context=context,
               optimization=Optimization(guard, wrapped.lr_scheduler, config.optim.grad_clip, wrapped.staged,
                                         config.logging.log_samples),
               loader=loader, sampler=sampler, checkpointer=checkpointer, metrics=metrics, position=position,
               total_steps=total_steps, stop_at=stop_at,
               max_epochs=math.inf if config.optim.max_steps else config.optim.num_epochs, lock=lock)


def log_setup(wrapped: Boosted, prepared, sampler, attention: str, world_size: int, dp_size: int, total_steps: int) -> None:
    log(f"plugin {wrapped.traits.name} · {world_size} processes ({dp_size} data-parallel) · {len(prepared.dataset)} sequences · "
        f"{sampler.steps_per_epoch} steps/epoch · {total_steps} steps · global batch {sampler.global_batch_size} · "
        f"{wrapped.trainable_params:,}/{wrapped.total_params:,} parameters train · attention {attention} · "
        f"data order {'stored (curriculum)' if prepared.curriculum else 'shuffled per epoch'}")
    if sampler.samples_per_epoch < len(prepared.dataset):
        log(f"each epoch drops its last {len(prepared.dataset) - sampler.samples_per_epoch} sequences (less than a global batch)")


def data_for(config: TrainConfig, prepared, tokenizer, hf_config, traits, dp_size: int, dp_rank: int):
    """(loader, sampler, attention) of this rank: the pad token, the collator's attention, padding and mask dtype."""
    pad_id = builders.pad_token_id(config.data, tokenizer, config.model.tokenizer_dir)
    attention = builders.collator_attention(config.model, prepared, traits)
    loader, sampler = builders.build_loader(config.data, prepared, pad_id, attention,
                                            builders.padding_multiple(config.data, prepared, traits), dp_size, dp_rank,
                                            config.optim.seed, builders.mask_dtype(hf_config, traits))
    return loader, sampler, attention


def resume(config: TrainConfig, checkpointer: Checkpointer, at: Position, sampler, dp_rank: int, hf_config) -> None:
    """A full checkpoint restores the position (weights-only loading leaves it at the start: a new stage)."""
    from transformers import set_seed

    states = checkpointer.resume(hf_config)
    if states is None:
        return
    at.epoch, at.consumed, at.step = states["epoch"], states["consumed_samples"], states["step"]
    at.tokens_seen.update(states.get("tokens_seen", {}))
    warning = sampler.follow_saved_layout(states.get("sampler", {}), at.epoch, at.consumed)
    if warning:
        log(f"warning: {warning}")
    if not states["rng_restored"]:
        # Another world size: fresh, still reproducible streams; one per data-parallel rank, so that the ranks
        # of one tensor/pipeline/sequence group (same dp rank) keep drawing the same numbers (NEFTune noise).
        set_seed(config.optim.seed + 1000 * at.step + dp_rank)
    log(f"resumed from {states['path']}: epoch {at.epoch}, step {at.step}, {at.consumed} samples into the epoch")
