"""Continual pre-training of a causal LM on Colossal-AI's Booster (thin CLI over colossal_lang.training).

Launch with `colossalai run --nproc_per_node N [--hostfile FILE] train.py ...` or `torchrun`; see
train.example.sh and docs/training.md.
"""

from colossal_lang.errors import run_cli


def main(argv=None):
    from colossal_lang.training.loop import main as train_main

    return train_main(argv)


if __name__ == "__main__":
    run_cli(main)
