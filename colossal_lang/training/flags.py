"""train.py's argument parser, built from the fields of the configuration groups (config.py): one flag per field.

A field's name is its flag; its type, default and help become the flag's. Booleans take cli.add_boolean_flag's
spellings (`--flag`, `--no-flag`, `--flag true|false`); `aliases` add other names (Colossal-LLaMA's
`--micro_batch_size`, `--gradient_clipping`, `--zero`), `negations` other names that turn a boolean off.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

from typing import Optional, Sequence

from colossal_lang.cli import add_boolean_flag, parse_args_with_config
from colossal_lang.training.config import GROUPS, TrainConfig
from colossal_lang.training.resolve import resolve

TYPES = {"int": int, "float": float, "str": str}


class TrueDefaultsFormatter(argparse.HelpFormatter):
    """Appends `(default: X)` where there is one; derived defaults are explained in the help text instead."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.required or action.default in (None, argparse.SUPPRESS) or action.option_strings == ["-h", "--help"]:
            return text
        shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
        return f"{text} (default: {shown})"


def value_type(annotation: str):
    """int / float / str from a field annotation such as `Optional[int]` or `List[float]`."""
    inner = annotation.replace("Optional[", "").replace("List[", "").rstrip("]")
    return TYPES[inner]


def field_default(spec):
    if spec.default is not MISSING:
        return spec.default
    return spec.default_factory()


def add_field_flag(group, spec) -> None:
    options = dict(spec.metadata)
    help_text = options.pop("help")
    aliases = options.pop("aliases", ())
    negations = options.pop("negations", ())
    default = field_default(spec)
    if "bool" in spec.type:
        add_boolean_flag(group, spec.name, default, help_text)
        for negation in negations:
            group.add_argument(negation, dest=spec.name, action="store_false", default=argparse.SUPPRESS,
                               help=f"same as --no-{spec.name}")
        return
    group.add_argument(f"--{spec.name}", *aliases, dest=spec.name, type=value_type(spec.type), default=default,
                       help=help_text, **options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Continual pre-training / fine-tuning of a causal LM on Colossal-AI's Booster.",
        formatter_class=TrueDefaultsFormatter,
    )
    for group_class in GROUPS.values():
        group = parser.add_argument_group(group_class.__doc__)
        for spec in fields(group_class):
            add_field_flag(group, spec)
    return parser


def parse_train_args(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    """train.py's command line (and its --config file) as a checked, completed TrainConfig."""
    namespace = vars(parse_args_with_config(build_parser(), argv))
    namespace.pop("config", None)
    config = TrainConfig.from_flat(namespace)
    resolve(config)
    return config
