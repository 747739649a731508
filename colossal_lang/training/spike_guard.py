"""Loss-spike guard: skip batches whose loss is far above the recent median; roll back after repeated spikes."""

from __future__ import annotations

import math
import statistics
from collections import deque

OK, NOT_FINITE, SPIKE = "ok", "not_finite", "spike"


class SpikeGuard:
    """Judges each step's global loss. All ranks see the same all-reduced loss, so they decide alike."""

    def __init__(self, window: int = 50, factor: float = 3.0, min_history: int = 10, rollback_after: int = 3):
        self.window = window
        self.factor = factor
        self.min_history = min_history
        self.rollback_after = rollback_after
        self.recent = deque(maxlen=max(1, window))
        self.spikes_since_checkpoint = 0
        self.events: list[dict] = []

    def judge(self, step: int, loss: float, grad_norm: float | None = None) -> str:
        if not math.isfinite(loss) or (grad_norm is not None and not math.isfinite(grad_norm)):
            self.events.append({"step": step, "event": NOT_FINITE, "loss": repr(loss), "grad_norm": repr(grad_norm)})
            return NOT_FINITE
        if self.factor > 0 and len(self.recent) >= self.min_history:
            median = statistics.median(self.recent)
            if loss > self.factor * median:
                self.spikes_since_checkpoint += 1
                self.events.append({"step": step, "event": SPIKE, "loss": loss, "median": median})
                return SPIKE
        self.recent.append(loss)
        return OK

    def needs_rollback(self) -> bool:
        return self.rollback_after > 0 and self.spikes_since_checkpoint >= self.rollback_after

    def checkpoint_saved(self) -> None:
        self.spikes_since_checkpoint = 0

    def state_dict(self) -> dict:
        return {"recent": list(self.recent), "spikes_since_checkpoint": self.spikes_since_checkpoint}

    def load_state_dict(self, state: dict) -> None:
        self.recent = deque(state.get("recent", []), maxlen=max(1, self.window))
        self.spikes_since_checkpoint = state.get("spikes_since_checkpoint", 0)
