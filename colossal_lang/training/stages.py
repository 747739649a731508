"""--stages: which parameters learn at which step of one run (staged training as in EEVE, Kim et al. 2024).

SPEC is a comma list of WHAT:STEPS, WHAT one of
  new_rows    only the embedding and head rows of new tokens (ids >= --new_token_start) learn; the old rows and
              every other parameter stay bit-identical (tied models included: one matrix, the same rows);
  embeddings  the input embeddings and the head learn (all rows); the layers and norms stay as they are;
  all         everything learns.
The last stage may omit STEPS: it runs to the end of the run (--max_steps or the epochs).

How: every parameter keeps requires_grad for the whole run, so the DDP wrapper, the optimizer's parameter
groups and the checkpoints are the same in every stage. After each backward, the parameters the current stage
freezes lose their gradient (grad = None; torch's AdamW, LionW and Colossal-AI's HybridAdam then skip them
entirely: no decay, no moment update, no step count), and in a new_rows stage the old rows' gradients are
zeroed (zero gradient and zero moments give a zero update). The embedding matrices sit in the optimizer's
no-decay group and are decayed here, on the rows that learn. The stage is a function of the step number alone,
so a resumed run is in the same stage as the interrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from colossal_lang.errors import InputError

STAGE_KINDS = ("new_rows", "embeddings", "all")


@dataclass(frozen=True)
class Stage:
    kind: str
    first_step: int  # global optimizer step, counted from 1
    last_step: Optional[int]  # inclusive; None: to the end of the run


def parse_stages(spec: str) -> List[Stage]:
    """'new_rows:200,embeddings:300,all' -> stages over steps 1-200, 201-500, 501-end."""
    stages, first = [], 1
    items = [item.strip() for item in spec.split(",")]
    for position, item in enumerate(items):
        kind, _, steps = item.partition(":")
        if kind not in STAGE_KINDS:
            raise InputError(f"--stages: unknown stage {kind!r} in {spec!r} (choose from {', '.join(STAGE_KINDS)})")
        last_item = position == len(items) - 1
        if not steps:
            if not last_item:
                raise InputError(f"--stages: only the last stage may omit its steps ({item!r} in {spec!r})")
            stages.append(Stage(kind, first, None))
            break
        if not steps.isdigit() or int(steps) < 1:
            raise InputError(f"--stages: {item!r} needs a positive whole number of steps after ':'")
        stages.append(Stage(kind, first, first + int(steps) - 1))
        first += int(steps)
    return stages


def check_stages_cover(stages: Sequence[Stage], total_steps: int) -> None:
    """The stages and the run must end together: no step without a stage, no stage that never runs."""
    last = stages[-1]
    if last.last_step is not None and last.last_step != total_steps:
        raise InputError(f"--stages covers {last.last_step} steps but the run has {total_steps}: omit the last "
                         "stage's steps to run it to the end, or set --max_steps")
    if last.last_step is None and last.first_step > total_steps:
        raise InputError(f"--stages: the stages before the last cover {last.first_step - 1} steps, the run has only "
                         f"{total_steps}")


def stage_at(stages: Sequence[Stage], step: int) -> Stage:
    for stage in stages:
        if stage.last_step is None or step <= stage.last_step:
            return stage
    return stages[-1]


class StagedParameters:
    """The gradient masking and the embedding decay of one staged run."""

    def __init__(self, stages: Sequence[Stage], embedding_matrices: List[torch.nn.Parameter],
                 layer_params: List[torch.nn.Parameter], new_token_start: Optional[int], weight_decay: float):
        self.stages = list(stages)
        self.embedding_matrices = embedding_matrices
        self.layer_params = layer_params
        self.new_token_start = new_token_start
        self.weight_decay = weight_decay

    def first_trained_row(self, stage: Stage) -> int:
        return self.new_token_start if stage.kind == "new_rows" else 0

    @torch.no_grad()
    def mask_gradients(self, step: int) -> Stage:
        """After backward, before clipping: drop the gradients the stage of `step` does not train."""
        stage = stage_at(self.stages, step)
        if stage.kind == "all":
            return stage
        for param in self.layer_params:
            param.grad = None
        if stage.kind == "new_rows":
            for weight in self.embedding_matrices:
                if weight.grad is not None:
                    weight.grad[: self.new_token_start] = 0
        return stage

    @torch.no_grad()
    def decay_embeddings(self, stage: Stage, lr: float) -> None:
        """Decoupled weight decay on the embedding rows the stage trains (right before optimizer.step)."""
        if not self.weight_decay:
            return
        start = self.first_trained_row(stage)
        for weight in self.embedding_matrices:
            weight[start:].mul_(1 - lr * self.weight_decay)


def staged_parameters(model, stages: Sequence[Stage], new_token_start: Optional[int], weight_decay: float,
                      embedding_matrices: List[torch.nn.Parameter]) -> StagedParameters:
    """Split the model's parameters into the embedding matrices and the rest (`model` before boosting)."""
    vocab_rows = embedding_matrices[0].shape[0]
    if any(stage.kind == "new_rows" for stage in stages) and not (new_token_start and new_token_start < vocab_rows):
        raise InputError("--stages new_rows (and --train_new_rows_only) need --new_token_start (or --reference_model) below the "
                         f"{vocab_rows} embedding rows (got {new_token_start})")
    matrix_ids = {id(weight) for weight in embedding_matrices}
    layers = [p for p in model.parameters() if p.requires_grad and id(p) not in matrix_ids]  # tied: listed once
    return StagedParameters(stages, embedding_matrices, layers, new_token_start, weight_decay)
