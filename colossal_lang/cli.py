"""Argument-parsing helpers shared by every command: booleans that parse, and `--config` files."""

from __future__ import annotations

import argparse
import json
import os
import sys
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
                        action=_BooleanFlag, default=default, help=help if "default" in help else f"{help} (default: {default})".strip())


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


class _ConfigList(list):
    """A list value read from a --config file; an `append` flag on the command line copies it and adds to the copy."""


class _ParseFailure(Exception):
    pass


def _parse_quietly(parser: argparse.ArgumentParser, argv: list, namespace=None):
    """parser.parse_known_args that raises _ParseFailure instead of printing usage and exiting."""
    def fail(message):
        raise _ParseFailure(message)

    parser.error = fail  # an instance attribute shadows the method for this call only
    try:
        return parser.parse_known_args(argv, namespace)
    finally:
        del parser.error


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    try:
        parser.add_argument("--config", default=None, help="YAML or JSON file setting any flag; the command line overrides it")
    except argparse.ArgumentError:  # the command declares --config itself
        pass


def _probe_tokens(values: dict) -> list:
    """One `--name value` pair per config entry: parsed, they show which names are flags and which take lists."""
    tokens = []
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        if not items or any(item is None or isinstance(item, (dict, list)) for item in items):
            continue
        tokens += [f"--{name}", *(str(item).lower() if isinstance(item, bool) else str(item) for item in items)]
    return tokens


def _flag_shapes(parser, values: dict, argv: list) -> Optional[dict]:
    """dest -> parsed probe value for every flag the parser has (None when the probe cannot parse)."""
    for tokens in (_probe_tokens(values), _probe_tokens(values) + argv):
        try:
            namespace, _ = _parse_quietly(parser, tokens)
            return vars(namespace)
        except _ParseFailure:
            continue
    return None


def _required_missing(message: str) -> list:
    """Option names from argparse's "the following arguments are required: --a, --b/-b" message."""
    prefix = "the following arguments are required:"
    if not message.startswith(prefix):
        return []
    return [name.split("/")[0].strip() for name in message[len(prefix):].split(",")]


def parse_args_with_config(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None):
    """Parse `argv`; a `--config FILE` (YAML or JSON) sets any flag's default, the command line overrides it.

    A flag that takes several values (`nargs="+"`, or repeated with `action="append"`) is replaced whole by
    the command line; a single value in the config counts as a list of one. Config values stand in the
    namespace argparse fills (it keeps what is there unless the command line sets it); a required flag that
    only the config gives is handed to argparse as one `--flag value` pair and then set to the config's value.
    """
    _add_config_flag(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    config_path = pre.parse_known_args(argv)[0].config
    if not config_path:
        return parser.parse_args(argv)
    values = load_config_file(config_path)
    shapes = _flag_shapes(parser, values, argv)
    if shapes is not None:
        unknown = sorted(set(values) - set(shapes))
        if unknown:
            raise InputError(f"unknown setting(s) {', '.join(unknown)}", config_path)
        for name, value in values.items():
            parsed = shapes[name]  # converted by the flag's `type`, exactly as from the command line
            all_text = isinstance(value, list) and all(isinstance(item, str) for item in value)
            if isinstance(value, str) or (all_text and isinstance(parsed, list) and len(parsed) == len(value)):
                values[name] = parsed
            elif isinstance(parsed, list) and not isinstance(value, list):
                values[name] = [value]  # `data: file.jsonl` means one file, not its characters
    prefilled = {name: _ConfigList(value) if isinstance(value, list) else value for name, value in values.items()}
    stand_ins = []
    for _ in range(2):  # the second pass hands argparse the required flags the config gives
        try:
            _parse_quietly(parser, stand_ins + argv, argparse.Namespace(**prefilled))
            break
        except _ParseFailure as failure:
            missing = [(name, name.lstrip("-").replace("-", "_")) for name in _required_missing(str(failure))]
            given = [(name, dest) for name, dest in missing if dest in values]
            if stand_ins or not given or len(given) < len(missing):
                return parser.parse_args(argv, argparse.Namespace(**prefilled))  # argparse reports and exits
            for name, dest in given:
                first = values[dest][0] if isinstance(values[dest], list) else values[dest]
                stand_ins += [name, str(first)]
    args = parser.parse_args(stand_ins + argv, argparse.Namespace(**prefilled))  # unknown arguments exit here
    for name, value in vars(args).items():
        if isinstance(value, _ConfigList):
            config_items = values[name]  # untouched, or copied and added to by a repeated flag
            setattr(args, name, list(config_items) if value is prefilled[name] else list(value)[len(config_items):])
    for name in stand_ins[::2]:
        dest = name.lstrip("-").replace("-", "_")
        setattr(args, dest, values[dest])
    return args
