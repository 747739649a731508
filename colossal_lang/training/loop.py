"""The training run, top to bottom: launch, build, resume, then steps with logging, guard and checkpoints."""

from __future__ import annotations

import argparse
import math
import os
import time
from contextlib import nullcontext
from functools import partial

import torch
import torch.distributed as dist

from colossal_lang.data.arrow_output import tokenizer_hash
from colossal_lang.data.loader import load_prepared_dataset
from colossal_lang.io.models import load_model_config
from colossal_lang.io.tokenizer_files import load_hf_tokenizer
from colossal_lang.training import adaptation, boosted, checkpoint, nodes, plugins
from colossal_lang.training.config import effective_config, write_config_file
from colossal_lang.training.metrics import MetricsWriter, Throughput, flops_per_token, memory_gib, peak_flops_per_device
from colossal_lang.training.optim import build_optimizer, build_scheduler, parameter_groups
from colossal_lang.training.setup import DTYPES, build_loader, build_model, build_reference
from colossal_lang.training.spike_guard import OK, SpikeGuard
from colossal_lang.training.step import StepContext, clip_and_norm, forward_backward


def log(message: str) -> None:
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(message, flush=True)


def single_process_defaults() -> None:
    """`python train.py ...` without a launcher runs as one process."""
    if "RANK" not in os.environ:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def injected_save_fault(args, step: int):
    if args.inject_save_failure_at_step == step:
        return "disk_full"
    if args.inject_kill_during_save_at_step == step:
        return "kill"
    return None


def train(args: argparse.Namespace) -> dict:
    import colossalai
    from colossalai.accelerator import get_accelerator
    from colossalai.booster import Booster
    from transformers import set_seed

    # ---- checks that need only the world size and the model's shape, then launch
    model_config = load_model_config(args.pretrained)
    plugins.check_plugin(args, int(os.environ.get("WORLD_SIZE", "1")), model_config)
    prepared = load_prepared_dataset(args.dataset)
    tokenizer = load_hf_tokenizer(args.tokenizer_dir)
    if not dist.is_initialized():  # (tests run several single-process trainings in one interpreter)
        single_process_defaults()
        colossalai.launch_from_torch(seed=args.seed, verbose=False)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    is_master = rank == 0
    device = get_accelerator().get_current_device()
    if prepared.tokenizer_hash and prepared.tokenizer_hash != tokenizer_hash(args.tokenizer_dir):
        # A warning, not an error: re-saving an identical tokenizer can change its files' bytes. Token ids
        # beyond the embeddings are refused at the first step.
        log(f"warning: the dataset was tokenized with another tokenizer than {args.tokenizer_dir} (manifest hash differs)")
    nodes.check_save_dir_shared(args.save_dir)
    if is_master:
        checkpoint.clear_staging(args.save_dir)
        if args.config_file:
            write_config_file(args, args.config_file)
    plugin = plugins.make_plugin(args)
    booster = Booster(plugin=plugin, mixed_precision=plugins.booster_mixed_precision(args))
    dp_size, dp_rank = plugins.data_parallel_info(plugin, args, world_size, rank)

    # ---- model, data, optimizer, schedule
    set_seed(args.seed)  # identical initialisation of anything random on every rank
    parts = build_model(args, model_config)
    model = parts.model
    if args.lora_rank:
        model = booster.enable_lora(model, lora_config=adaptation.lora_config(args, parts.vocabulary_grew))
    trainable, total_params = adaptation.count_trainable(model)
    reference = build_reference(args, device)
    loader, sampler = build_loader(args, prepared, tokenizer, dp_size, dp_rank)
    # --max_steps sets the run's length (cycling through epochs as needed); otherwise --num_epochs does.
    total_steps = args.max_steps or sampler.steps_per_epoch * args.num_epochs
    max_epochs = math.inf if args.max_steps else args.num_epochs
    groups = parameter_groups(model, args.weight_decay, no_decay_params=parts.new_row_matrices)
    optimizer = build_optimizer(args, groups)
    lr_scheduler = build_scheduler(args, optimizer, total_steps)
    model, optimizer, _, _, lr_scheduler = booster.boost(model, optimizer, lr_scheduler=lr_scheduler)
    schedule = lr_scheduler.lr_lambdas[0]
    if args.use_neft:
        # On the embedding module the boosted model runs: shardformer (3d) replaces embed_tokens by a new module,
        # and LoRA's modules_to_save runs a copy of it; a hook on the original would never fire.
        adaptation.enable_neftune(boosted.user_module(model), args.neft_alpha)

    # ---- resume: full checkpoint, or weights only (a new stage of a multi-stage run)
    epoch, consumed, step = 0, 0, 0
    guard = SpikeGuard(args.spike_window, args.spike_factor, args.spike_min_history, args.spike_rollback_after)
    tokens_seen: dict = {}
    last_checkpoint = None
    load_path = None
    if args.load_checkpoint:  # rank 0 picks, so that every node resumes from the same checkpoint
        load_path = nodes.decided_by_rank0(lambda: checkpoint.resolve_load_path(args.load_checkpoint, args.save_dir))
    if load_path is not None and checkpoint.is_weights_only(load_path):
        checkpoint.load_weights(booster, model, load_path, tied=adaptation.ties_embeddings(model_config))
        log(f"loaded weights only from {load_path}")
    elif load_path is not None:
        states = checkpoint.load_checkpoint(booster, model, optimizer, lr_scheduler, load_path)
        epoch, consumed, step = states["epoch"], states["consumed_samples"], states["step"]
        guard.load_state_dict(states.get("spike_guard", {}))
        tokens_seen = states.get("tokens_seen", {})
        last_checkpoint = load_path
        warning = sampler.follow_saved_layout(states.get("sampler", {}), epoch, consumed)
        if warning:
            log(f"warning: {warning}")
        if not states["rng_restored"]:
            # Another world size: fresh, still reproducible streams; one per data-parallel rank, so that the ranks
            # of one tensor/pipeline/sequence group (same dp rank) keep drawing the same numbers (NEFTune noise).
            set_seed(args.seed + 1000 * step + dp_rank)
        log(f"resumed from {load_path}: epoch {epoch}, step {step}, {consumed} samples into the epoch")
    total_steps = schedule.total_steps  # a resumed schedule keeps its length
    stop_at = min(total_steps, args.stop_at_step) if args.stop_at_step else total_steps

    pipeline = args.plugin == "3d" and args.pp > 1
    autocast_dtype = DTYPES[args.mixed_precision]
    use_autocast = args.plugin == "ddp" and args.mixed_precision == "bf16"
    ctx = StepContext(
        booster=booster, model=model, optimizer=optimizer, device=device,
        autocast=partial(torch.autocast, device.type, dtype=autocast_dtype) if use_autocast else nullcontext,
        dp_size=dp_size, dp_group=plugin.dp_group if args.plugin == "3d" else None,
        pp_group=plugin.pp_group if pipeline else None,
        categories=prepared.categories, reference=reference, kl_coef=args.kl_coef,
        kl_categories=set(args.kl_categories) if args.kl_categories else None,
        original_vocab_size=parts.original_vocab_size, uses_model_loss=args.plugin == "3d", pipeline=pipeline,
        num_microbatches=max(1, args.batch_size // args.microbatch_size) if pipeline else 1,
        vocab_rows=model_config.vocab_size, plugin_name=args.plugin, zero_stage=args.zero_stage,
    )
    writer = MetricsWriter(args.tensorboard_dir, args.loss_log, enabled=is_master)
    throughput = Throughput()
    peak_flops = peak_flops_per_device(args.mixed_precision)
    log(f"plugin {args.plugin} · {world_size} processes ({dp_size} data-parallel) · {len(prepared.dataset)} sequences · "
        f"{sampler.steps_per_epoch} steps/epoch · {total_steps} steps · global batch {sampler.global_batch_size} · "
        f"{trainable:,}/{total_params:,} parameters train · attention {loader.collate_fn.attention} · "
        f"data order {'stored (curriculum)' if prepared.curriculum else 'shuffled per epoch'}")
    if sampler.samples_per_epoch < len(prepared.dataset):
        log(f"each epoch drops its last {len(prepared.dataset) - sampler.samples_per_epoch} sequences (less than a global batch)")

    saved_step = step if load_path is not None and not checkpoint.is_weights_only(load_path) else None

    def save(reason: str):
        nonlocal saved_step
        running_states = {
            "consumed_samples": consumed, "sample_start_index": consumed, "world_size": world_size, "dp_size": dp_size,
            "global_batch_size": sampler.global_batch_size, "total_steps": total_steps,
            "sampler": sampler.state_dict(consumed), "spike_guard": guard.state_dict(), "tokens_seen": tokens_seen,
            "config": effective_config(args), "reason": reason,
        }
        path = checkpoint.save_checkpoint(booster, model, optimizer, lr_scheduler, tokenizer, args.save_dir,
                                          epoch, step, running_states, args.keep_last,
                                          fault=injected_save_fault(args, step))
        guard.checkpoint_saved()
        saved_step = step
        log(f"saved checkpoint {path}")
        return path

    progress = None
    if is_master and args.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)

    # ---- the loop
    started = time.perf_counter()
    history = []
    while step < stop_at and epoch < max_epochs:
        sampler.set_position(epoch, consumed)
        epoch, consumed = sampler.epoch, sampler.start
        if epoch >= max_epochs:
            break
        if consumed % sampler.global_batch_size and sampler.dropped:  # resumed between steps of another world size
            log(f"epoch {epoch} resumed at sample {consumed}: its last {sampler.dropped} sequences no longer fill a global batch")
        batches = iter(loader)
        while step < stop_at:
            micro_batches = [mb for _, mb in zip(range(args.accumulation_steps), batches)]
            if len(micro_batches) < args.accumulation_steps:  # epoch exhausted
                epoch, consumed = epoch + 1, 0
                break
            model.train()
            stats = forward_backward(ctx, micro_batches, inject_nan=args.inject_nan_at_step == step + 1, log_samples=args.log_samples)
            grad_norm = clip_and_norm(ctx, args.grad_clip, plugins.plugin_clips_gradients(args))
            verdict = guard.judge(step + 1, stats["loss"], grad_norm)
            diverged = False  # a plugin's step put non-finite gradients into the weights
            if verdict == OK:
                if parts.new_row_matrices:
                    adaptation.decay_new_rows(parts.new_row_matrices, parts.new_token_start, lr_scheduler.get_last_lr()[0], args.weight_decay)
                if plugins.plugin_clips_gradients(args):  # clips, and measures the norm, inside step()
                    grad_norm, overflow = boosted.plugin_optimizer_step(optimizer)
                    if overflow:  # fp16: the plugin skipped the step itself and lowered the loss scale
                        verdict = "fp16_overflow"
                        writer.event({"step": step + 1, "event": verdict, "loss": stats["loss"]})
                        log(f"step {step + 1}: fp16 gradient overflow, step skipped by the plugin")
                    elif not boosted.finite(grad_norm):
                        # A finite loss with inf/NaN gradients (bf16/fp32 plugins do not check): the step has already
                        # applied them, so the weights must come back from the last checkpoint.
                        diverged = True
                        writer.event({"step": step + 1, "event": "not_finite_after_step", "loss": stats["loss"],
                                      "grad_norm": repr(grad_norm)})
                else:
                    optimizer.step()
            else:
                if getattr(optimizer, "scaler", None) is not None:
                    optimizer.scaler.update()
                writer.event(guard.events[-1])
                log(f"step {step + 1}: {verdict} (loss {stats['loss']}), batch skipped")
            boosted.reset_gradient_accumulation(optimizer)
            optimizer.zero_grad()
            lr = lr_scheduler.get_last_lr()[0]
            lr_scheduler.step()
            consumed += sampler.global_batch_size
            step += 1
            for name, count in stats.items():
                if name.startswith("tokens/"):
                    tokens_seen[name[7:]] = tokens_seen.get(name[7:], 0) + count

            tokens_per_s = throughput.tick(stats["tokens"])
            record = {"step": step, "epoch": epoch, "loss": stats["loss"], "lr": lr, "grad_norm": grad_norm,
                      "tokens": stats["tokens"], "tokens_per_s": tokens_per_s, "cpu_s": throughput.cpu_seconds,
                      "skipped": verdict != OK or diverged, **memory_gib()}
            record.update({k: v for k, v in stats.items() if k.startswith("loss/") or k in ("kl", "samples")})
            record.update({f"tokens_seen/{k}": v for k, v in tokens_seen.items()})
            if peak_flops:
                seq = micro_batches[0]["input_ids"].shape[1]
                record["mfu"] = tokens_per_s * flops_per_token(model_config, seq, total_params) / (peak_flops * world_size)
            history.append(record)
            if step % args.log_interval == 0 or step == stop_at:
                writer.scalars(step, {("train/" + k if "/" not in k else k): v for k, v in record.items()
                                      if isinstance(v, (int, float)) and k not in ("step", "epoch", "skipped", "cpu_s")})
                writer.event(record)
            if progress is not None:
                progress.set_postfix(loss=f"{stats['loss']:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:.0f}", refresh=False)
                progress.update(1)

            if diverged or guard.needs_rollback():
                latest = nodes.decided_by_rank0(lambda: checkpoint.latest_checkpoint(args.save_dir))
                last_checkpoint = latest or last_checkpoint
                if diverged and last_checkpoint is None:
                    raise RuntimeError(f"step {step}: non-finite gradients (norm {grad_norm}) reached the weights inside "
                                       f"the --plugin {args.plugin} optimizer step and there is no checkpoint to roll back to")
                if last_checkpoint is not None:
                    checkpoint.load_checkpoint(booster, model, optimizer, lr_scheduler, last_checkpoint)
                schedule.lr_scale *= args.spike_lr_factor
                lr_scheduler.last_epoch = step - 1  # data and step move on; only weights and moments go back
                lr_scheduler.step()
                guard.checkpoint_saved()
                event = {"step": step, "event": "rollback", "to": str(last_checkpoint), "lr_scale": schedule.lr_scale}
                writer.event(event)
                why = "non-finite gradients reached the weights" if diverged else "repeated loss spikes"
                log(f"step {step}: {why}; rolled back to {last_checkpoint}, LR scale now {schedule.lr_scale}")
            if args.save_interval and step % args.save_interval == 0 and step < stop_at:
                last_checkpoint = save("interval")

    # ---- the end: a resumable checkpoint, and the final model as a Hugging Face folder
    if progress is not None:
        progress.close()
    elapsed = time.perf_counter() - started
    if step > 0 and saved_step != step:
        save("end" if step >= total_steps else "stopped")
    if step >= total_steps:
        final = checkpoint.save_final_model(booster, model, tokenizer, args.save_dir, args.plugin, merge_lora=bool(args.lora_rank))
        log(f"final model: {final}")
    writer.close()
    done = history[-1] if history else {}
    log(f"done: {step}/{total_steps} steps in {elapsed:.1f} s" + (f", last loss {done['loss']:.4f}" if done else ""))
    dist.barrier()
    return {"step": step, "history": history, "elapsed_s": elapsed}
