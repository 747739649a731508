"""Argument-parsing helpers shared by every command: booleans that parse, and `--config` files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from colossal_lang.errors import InputError

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


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
    """Parse `argv`; a `--config FILE` (YAML or JSON) sets any flag's default, the command line overrides it."""
    if "config" not in {action.dest for action in parser._actions}:
        parser.add_argument("--config", default=None, help="YAML or JSON file setting any flag; the command line overrides it")
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        values = load_config_file(known.config)
        dests = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - dests)
        if unknown:
            raise InputError(f"unknown setting(s) {', '.join(unknown)}", known.config)
        parser.set_defaults(**values)
        # Required flags given by the config are satisfied.
        for action in parser._actions:
            if action.dest in values:
                action.required = False
    return parser.parse_args(argv)
