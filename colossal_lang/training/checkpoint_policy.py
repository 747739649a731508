"""The run's checkpoint policy: when to save, what is kept (--keep_last), resume from `latest`, and rollback.

checkpoint_format.py holds the format (atomic folders, what goes where); this holds the decisions of one run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch.distributed as dist

from colossal_lang.training import adaptation, checkpoint_format, nodes
from colossal_lang.training.config import CheckpointConfig
from colossal_lang.training.spike_guard import SpikeGuard


class Checkpointer:
    def __init__(self, config: CheckpointConfig, booster, model, optimizer, lr_scheduler, tokenizer,
                 guard: SpikeGuard, running_states: Callable[[str], dict], log: Callable[[str], None]):
        self.config = config
        self.booster, self.model, self.optimizer, self.lr_scheduler = booster, model, optimizer, lr_scheduler
        self.tokenizer = tokenizer
        self.guard = guard
        self.running_states = running_states  # reason -> the run's position, sampler, guard and config
        self.log = log
        self.last: Optional[Path] = None  # where a rollback returns to
        self.saved_step: Optional[int] = None  # the step the newest checkpoint of this launch (or its resume) holds

    def resume(self, hf_config) -> Optional[dict]:
        """Load --load_checkpoint: running_states of a full checkpoint, or None (nothing, or weights only)."""
        if not self.config.load_checkpoint:
            return None
        # Rank 0 picks, so that every node resumes from the same checkpoint_format.
        path = nodes.decided_by_rank0(lambda: checkpoint_format.resolve_load_path(self.config.load_checkpoint, self.config.save_dir))
        if path is None:
            return None
        if checkpoint_format.is_weights_only(path):
            checkpoint_format.load_weights(self.booster, self.model, path, tied=adaptation.ties_embeddings(hf_config))
            self.log(f"loaded weights only from {path}")
            return None
        states = checkpoint_format.load_checkpoint(self.booster, self.model, self.optimizer, self.lr_scheduler, path)
        self.guard.load_state_dict(states.get("spike_guard", {}))
        self.last, self.saved_step = path, states["step"]
        states["path"] = path
        return states

    def save(self, epoch: int, step: int, reason: str) -> Path:
        path = checkpoint_format.save_checkpoint(self.booster, self.model, self.optimizer, self.lr_scheduler, self.tokenizer,
                                          self.config.save_dir, epoch, step, self.running_states(reason))
        if not dist.is_initialized() or dist.get_rank() == 0:
            checkpoint_format.remove_old_checkpoints(self.config.save_dir, self.config.keep_last)
        self.guard.checkpoint_saved()
        self.last, self.saved_step = path, step
        self.log(f"saved checkpoint {path}")
        return path

    def after_step(self, epoch: int, step: int, stop_at: int) -> None:
        """The interval checkpoint (the end of a launch saves in `finish`, whatever the interval)."""
        if self.config.save_interval and step % self.config.save_interval == 0 and step < stop_at:
            self.save(epoch, step, "interval")

    def after_epoch(self, epoch: int, step: int) -> None:
        if self.config.save_each_epoch and step > 0 and self.saved_step != step:
            self.save(epoch, step, "epoch")

    def finish(self, epoch: int, step: int, total_steps: int) -> None:
        if step > 0 and self.saved_step != step:
            self.save(epoch, step, "end" if step >= total_steps else "stopped")

    def rollback(self, step: int, schedule, lr_factor: float, why: str) -> dict:
        """Weights and optimizer moments back to the newest checkpoint, LR scaled down; data and step move on.

        The LR scale compounds over the rollbacks of a run: after the k-th it is lr_factor**k times the scale the
        run had before its first one, whether or not a checkpoint was saved in between (loading a checkpoint
        restores the schedule, and with it the scale that checkpoint was saved with; the scale in force before
        the load is the one that is lowered). Raises when non-finite values reached the weights
        (`why` == 'diverged') and there is nothing to go back to.
        """
        self.last = nodes.decided_by_rank0(lambda: checkpoint_format.latest_checkpoint(self.config.save_dir)) or self.last
        if why == "diverged" and self.last is None:
            raise RuntimeError(f"step {step}: non-finite gradients reached the weights inside the plugin's optimizer "
                               "step and there is no checkpoint to roll back to")
        scale = schedule.lr_scale
        if self.last is not None:
            checkpoint_format.load_checkpoint(self.booster, self.model, self.optimizer, self.lr_scheduler, self.last)
        schedule.lr_scale = scale * lr_factor
        self.lr_scheduler.last_epoch = step - 1
        self.lr_scheduler.step()
        self.guard.checkpoint_saved()
        reason = "non-finite gradients reached the weights" if why == "diverged" else "repeated loss spikes"
        self.log(f"step {step}: {reason}; rolled back to {self.last}, LR scale now {schedule.lr_scale}")
        return {"step": step, "event": "rollback", "to": str(self.last), "lr_scale": schedule.lr_scale}
