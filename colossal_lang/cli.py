"""Argument-parsing helpers shared by every command: booleans that parse, and `--config` files."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Optional, Sequence

from colossal_lang.errors import InputError

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


def transformers_without_torch() -> None:
    """Keep transformers from importing torch in a command that only tokenizes (data preparation).

    Call it before anything imports transformers. It saves about 1 s of start-up and 350 MB per process
    (tokenization workers included); the tokenizers and chat templates do not need torch. A value the
    user already set for `USE_TORCH` wins.
    """
    os.environ.setdefault("USE_TORCH", "0")
    # Without torch, transformers advises installing a framework on import: not wanted here.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def str2bool(value: str) -> bool:
    """Parse a boolean flag value; `--do_sample false` means False (argparse's `type=bool` would say True)."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {value!r}")


class _BooleanFlag(argparse.Action):
    """`--flag`, `--no-flag` / `--no_flag`, and the older `--flag true|false` spelling, all for one boolean."""

    def __init__(self, option_strings, dest, default=None, help=None, **_):
        # type=str2bool: argparse turns a bad value (`--flag maybe`) into its usage error, exit status 2.
        super().__init__(option_strings, dest, nargs="?", const=True, default=default, type=str2bool, help=help)

    def __call__(self, parser, namespace, value, option_string=None):
        negated = option_string.startswith("--no-") or option_string.startswith("--no_")
        setattr(namespace, self.dest, (not value) if negated else bool(value))


def add_boolean_flag(parser, name: str, default: Optional[bool], help: str = "") -> None:
    """Declare the boolean `--name` with its `--no-name` (and `--no_name`) negation; `--name false` still parses.

    `name` is the flag without dashes, e.g. `"progress"`; `--help` shows the true default.
    """
    parser.add_argument(f"--{name}", f"--no-{name}", f"--no_{name}", dest=name.replace("-", "_"),
                        action=_BooleanFlag, default=default, help=f"{help} (default: {default})".strip())


def require_positive(args, *flags: str) -> None:
    """InputError for the first of `flags` (argument names) that is set and below 1, e.g. `--batch_size 0`."""
    for flag in flags:
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise InputError(f"--{flag} must be at least 1, got {value}")


def load_config_file(path: str) -> dict:
    """Read a YAML or JSON mapping of flag names to values."""
    config_path = Path(path)
    if not config_path.is_file():
        raise InputError("config file not found", path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"invalid UTF-8 at byte {error.start}", path) from None
    try:
        if config_path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"cannot parse config: {error.msg} at column {error.colno}", path, error.lineno) from None
    except Exception as error:  # yaml's errors carry a mark (0-based line) and a multi-line text
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        line = mark.line + 1 if mark is not None else None
        raise InputError(f"cannot parse config: {' '.join(str(problem).split())}", path, line) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InputError("config must be a mapping of flag names to values", path)
    return values


def parse_args_with_config(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None):
    """Parse `argv`; a `--config FILE` (YAML or JSON) sets any flag's default, the command line overrides it.

    A flag that takes several values (`nargs="+"`, or repeated with `action="append"`) is replaced whole by
    the command line; a single value in the config counts as a list of one.
    """
    if "config" not in {action.dest for action in parser._actions}:
        parser.add_argument("--config", default=None, help="YAML or JSON file setting any flag; the command line overrides it")
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    repeated_from_config = {}
    if known.config:
        values = load_config_file(known.config)
        dests = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - dests)
        if unknown:
            raise InputError(f"unknown setting(s) {', '.join(unknown)}", known.config)
        for action in parser._actions:
            if action.dest not in values:
                continue
            action.required = False  # required flags given by the config are satisfied
            takes_a_list = isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*")
            if takes_a_list and not isinstance(values[action.dest], list):
                values[action.dest] = [values[action.dest]]  # `data: file.jsonl` means one file, not its characters
            if isinstance(action, argparse._AppendAction):
                # argparse appends a repeated flag to its default: keep the config's list out of the way, so
                # that the command line replaces it instead of adding to it.
                repeated_from_config[action.dest] = values.pop(action.dest)
                action.default = None
        parser.set_defaults(**values)
    args = parser.parse_args(argv)
    for dest, items in repeated_from_config.items():
        if getattr(args, dest) is None:
            setattr(args, dest, items)
    return args
