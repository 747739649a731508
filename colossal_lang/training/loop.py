"""The training run, top to bottom: set up (run.py), then steps with logging, guard and checkpoints, then the end.

`main(argv)` is train.py's and the `colossal-lang-train` console command's entry point.
"""

from __future__ import annotations

import time

import torch.distributed as dist

from colossal_lang.training import checkpoint_format
from colossal_lang.training.config import TrainConfig
from colossal_lang.training.flags import parse_train_args
from colossal_lang.training.run import Run, build_run, log
from colossal_lang.training.train_step import train_step


def main(argv=None) -> dict:
    return train(parse_train_args(argv))


def train(config: TrainConfig) -> dict:
    run = build_run(config)
    try:
        started = time.perf_counter()
        while run.position.step < run.stop_at and run.position.epoch < run.max_epochs:
            for micro_batches in epoch_batches(run):
                record = train_step(run.step_context, run.optimization, micro_batches, run.position.step + 1)
                advance(run, record, micro_batches)
                if run.position.step >= run.stop_at:
                    break
            else:  # the epoch ran out of batches
                run.checkpointer.after_epoch(run.position.epoch, run.position.step)
        return finish(run, time.perf_counter() - started)
    finally:
        if run.lock is not None:
            run.lock.release()


def epoch_batches(run: Run):
    """Optimizer steps' worth of micro-batches from the run's position to the end of its epoch (then the position
    moves to the next epoch's start)."""
    at, sampler = run.position, run.sampler
    sampler.set_position(at.epoch, at.consumed)
    at.epoch, at.consumed = sampler.epoch, sampler.start
    if at.epoch >= run.max_epochs:
        return
    if at.consumed % sampler.global_batch_size and sampler.dropped:  # resumed between steps of another world size
        log(f"epoch {at.epoch} resumed at sample {at.consumed}: its last {sampler.dropped} sequences no longer fill a global batch")
    batches = iter(run.loader)
    accumulation = run.config.data.accumulation_steps
    while True:
        micro_batches = [batch for _, batch in zip(range(accumulation), batches)]
        if len(micro_batches) < accumulation:
            at.epoch, at.consumed = at.epoch + 1, 0
            return
        yield micro_batches


def advance(run: Run, record, micro_batches) -> None:
    """After a step: the position moves on, the step is logged, and a rollback or an interval save may follow."""
    at = run.position
    at.consumed += run.sampler.global_batch_size
    at.step += 1
    run.metrics.step(record, at.epoch, micro_batches[0]["input_ids"].shape[1], last=at.step == run.stop_at)
    if record.diverged or run.optimization.guard.needs_rollback():
        event = run.checkpointer.rollback(at.step, run.schedule, run.config.guard.spike_lr_factor,
                                          "diverged" if record.diverged else "spikes")
        run.metrics.event(event)
    run.checkpointer.after_step(at.epoch, at.step, run.stop_at)


def finish(run: Run, elapsed: float) -> dict:
    """A resumable checkpoint for the launch's last step, and at the run's end the Hugging Face folder."""
    at, config = run.position, run.config
    run.metrics.close()
    run.checkpointer.finish(at.epoch, at.step, run.total_steps)
    if at.step >= run.total_steps:
        final = checkpoint_format.save_final_model(run.booster, run.step_context.model, run.checkpointer.tokenizer,
                                            config.checkpoint.save_dir, run.traits.shards_model,
                                            merge_lora=bool(config.adaptation.lora_rank))
        log(f"final model: {final}")
    history = run.metrics.history
    done = history[-1] if history else {}
    log(f"done: {at.step}/{run.total_steps} steps in {elapsed:.1f} s" + (f", last loss {done['loss']:.4f}" if done else ""))
    dist.barrier()
    return {"step": at.step, "history": history, "elapsed_s": elapsed}
