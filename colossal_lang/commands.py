"""The console commands that `pip install -e .` puts on PATH (pyproject.toml's [project.scripts] names them).

Each runs a module's `main` as `python -m <module>` does: an InputError is one line on stderr, exit status 2.
The top-level scripts stay for Colossal-LLaMA's users, and `train.py` stays the script that
`colossalai run` and `torchrun` launch.
"""

from __future__ import annotations

import importlib
from typing import Callable

from colossal_lang.errors import run_cli

# Data preparation only tokenizes: transformers is kept from importing torch (cli.transformers_without_torch).
TORCH_FREE = {"colossal_lang.data.prepare_pretrain", "colossal_lang.data.prepare_sft"}


def command(module_name: str) -> Callable[[], None]:
    """A console entry point running `module_name`'s `main(argv)` on the command line's arguments."""

    def run() -> None:
        if module_name in TORCH_FREE:
            from colossal_lang.cli import transformers_without_torch

            transformers_without_torch()
        run_cli(importlib.import_module(module_name).main)

    run.module_name = module_name
    return run


train_tokenizer = command("colossal_lang.tokenizer.train_tokenizer")
init_tokenizer = command("colossal_lang.tokenizer.init_tokenizer")
tokenizer_report = command("colossal_lang.tokenizer.report")
import_smollm2 = command("colossal_lang.model.import_smollm2")
init_model = command("colossal_lang.model.init_model")
prepare_pretrain = command("colossal_lang.data.prepare_pretrain")
prepare_sft = command("colossal_lang.data.prepare_sft")
perplexity = command("colossal_lang.evaluation.perplexity")
multiple_choice = command("colossal_lang.evaluation.multiple_choice")
compare = command("colossal_lang.evaluation.compare")
build_translation_mc = command("colossal_lang.evaluation.build_translation_mc")
generate = command("colossal_lang.inference")
# Single-process, or under a launcher: `torchrun --nproc_per_node N --no-python colossal-lang-train ...`.
train = command("colossal_lang.training.loop")
launch_nodes = command("colossal_lang.training.launch_nodes")
