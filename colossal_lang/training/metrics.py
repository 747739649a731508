"""What a run reports: tensorboard scalars, a JSON-lines step log, throughput, memory and MFU.

MFU = achieved model FLOP/s ÷ peak FLOP/s of the devices. Model FLOPs per trained token follow PaLM
(Chowdhery et al. 2022, appendix B): 6·N + 12·L·H·Q·T, with N the non-embedding parameters (plus the LM
head, which does a matmul per token), L layers, H heads, Q head size, T sequence length; gradient
checkpointing's recomputation is not counted (it is overhead, not model work). Peak FLOP/s come from
PEAK_FLOPS below (dense, no sparsity), chosen by the CUDA device name and the training precision.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Optional

import torch

# Dense peak TFLOP/s per GPU from the vendors' data sheets: (bf16/fp16 tensor core, tf32 tensor core for fp32).
PEAK_TFLOPS = {
    "H200": (989.0, 494.0),
    "H100 SXM": (989.0, 494.0),
    "H100 PCIe": (756.0, 378.0),
    "H100": (989.0, 494.0),
    "A100": (312.0, 156.0),
    "A800": (312.0, 156.0),
    "L40S": (362.0, 183.0),
    "A10G": (125.0, 62.5),
    "V100": (125.0, 15.7),
    "4090": (165.0, 82.6),
}


def peak_flops_per_device(precision: str) -> Optional[float]:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, (half, tf32) in PEAK_TFLOPS.items():
        if key in name:
            return (half if precision in ("bf16", "fp16") else tf32) * 1e12
    return None


def flops_per_token(model_config, seq_length: int, num_params: int) -> float:
    layers = model_config.num_hidden_layers
    hidden = model_config.hidden_size
    embedding = model_config.vocab_size * hidden
    # The input embedding is a lookup, not a matmul; the head is one. Tied, the shared matrix is in
    # num_params once and stands for the head; untied, the input embedding's copy is taken out.
    matmul_params = num_params if getattr(model_config, "tie_word_embeddings", False) else num_params - embedding
    return 6.0 * matmul_params + 12.0 * layers * hidden * seq_length


def memory_gib() -> dict:
    if torch.cuda.is_available():
        return {"memory/peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
                "memory/reserved_gib": torch.cuda.memory_reserved() / 2**30}
    return {"memory/peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


class Throughput:
    """Tokens per second between calls (wall clock, all data-parallel ranks together), and this process's CPU
    seconds over the same span (on shared CPU machines, tokens per CPU second is the steadier measure)."""

    def __init__(self):
        self.last = time.perf_counter()
        self.last_cpu = time.process_time()
        self.cpu_seconds = 0.0

    def tick(self, tokens: int) -> float:
        now, now_cpu = time.perf_counter(), time.process_time()
        elapsed, self.last = now - self.last, now
        self.cpu_seconds, self.last_cpu = now_cpu - self.last_cpu, now_cpu
        return tokens / elapsed if elapsed > 0 else 0.0


class MetricsWriter:
    """Rank-0 sink for scalars: tensorboard (if a folder is given) and a JSON-lines log (if a file is given)."""

    def __init__(self, tensorboard_dir: Optional[str], loss_log: Optional[str], enabled: bool):
        self.enabled = enabled
        self.tensorboard = None
        self.loss_log = None
        if not enabled:
            return
        if tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(tensorboard_dir)
        if loss_log:
            Path(loss_log).parent.mkdir(parents=True, exist_ok=True)
            self.loss_log = open(loss_log, "a", encoding="utf-8")

    def scalars(self, step: int, values: dict) -> None:
        if self.tensorboard is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(name, value, step)

    def event(self, record: dict) -> None:
        """One JSON line: step records and guard events (skips, rollbacks) alike."""
        if self.loss_log is not None:
            self.loss_log.write(json.dumps(record) + "\n")
            self.loss_log.flush()
        if self.tensorboard is not None and record.get("event"):
            self.tensorboard.add_text("events", json.dumps(record), record.get("step", 0))

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.loss_log is not None:
            self.loss_log.close()


EVENT_MESSAGES = {"fp16_overflow": "fp16 gradient overflow, step skipped by the plugin",
                  "not_finite_after_step": "non-finite gradients reached the weights in the plugin's step"}


class StepLogger:
    """Turns each StepRecord into the step log's line, tensorboard scalars, console messages and the progress bar.

    Rank 0 writes; every rank keeps the history (train() returns it) and the tokens seen per category.
    """

    def __init__(self, logging_config, total_steps: int, start_step: int, is_master: bool, hf_config, total_params: int,
                 world_size: int, precision: str, tokens_seen: dict, log):
        self.config = logging_config
        self.writer = MetricsWriter(logging_config.tensorboard_dir, logging_config.loss_log, enabled=is_master)
        self.throughput = Throughput()
        self.peak_flops = peak_flops_per_device(precision)
        self.hf_config, self.total_params, self.world_size = hf_config, total_params, world_size
        self.tokens_seen = tokens_seen
        self.history: list[dict] = []
        self.log = log
        self.progress = None
        if is_master and logging_config.progress:
            from tqdm.auto import tqdm

            self.progress = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    def step(self, record, epoch: int, sequence_length: int, last: bool) -> dict:
        for event in record.events:
            self.writer.event(event)
            default = f"{event['event']} (loss {record.loss}), batch skipped"
            self.log(f"step {record.step}: {EVENT_MESSAGES.get(event['event'], default)}")
        for name, count in record.stats.items():
            if name.startswith("tokens/"):
                self.tokens_seen[name[7:]] = self.tokens_seen.get(name[7:], 0) + count
        line = self.line(record, epoch, sequence_length)
        self.history.append(line)
        self.writer.event(line)
        if record.step % self.config.log_interval == 0 or last:
            self.writer.scalars(record.step, {("train/" + k if "/" not in k else k): v for k, v in line.items()
                                              if isinstance(v, (int, float)) and k not in ("step", "epoch", "skipped", "cpu_s")})
        if self.progress is not None:
            self.progress.set_postfix(loss=f"{record.loss:.4f}", lr=f"{record.lr:.2e}", tok_s=f"{line['tokens_per_s']:.0f}",
                                      refresh=False)
            self.progress.update(1)
        return line

    def line(self, record, epoch: int, sequence_length: int) -> dict:
        stats = record.stats
        tokens_per_s = self.throughput.tick(stats["tokens"])
        line = {"step": record.step, "epoch": epoch, "stage": record.stage, "loss": record.loss, "lr": record.lr, "grad_norm": record.grad_norm,
                "tokens": stats["tokens"], "tokens_per_s": tokens_per_s, "cpu_s": self.throughput.cpu_seconds,
                "skipped": record.skipped, **memory_gib()}
        line.update({k: v for k, v in stats.items() if k.startswith("loss/") or k in ("kl", "samples")})
        line.update({f"tokens_seen/{k}": v for k, v in self.tokens_seen.items()})
        if self.peak_flops:
            flops = flops_per_token(self.hf_config, sequence_length, self.total_params)
            line["mfu"] = tokens_per_s * flops / (self.peak_flops * self.world_size)
        return line

    def event(self, event: dict) -> None:
        """An event outside a step's own record (a rollback): the step log and tensorboard's text."""
        self.writer.event(event)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        self.writer.close()
