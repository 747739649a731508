"""The one exception type for bad user input, and how command-line entry points report it."""

from __future__ import annotations

import sys
from typing import Callable, Optional

from colossal_lang.io.error_text import one_line


class InputError(Exception):
    """Bad input from the user: a file, a line, a flag. The message names where and what.

    Command-line entry points print it on one line, without a traceback, and exit with status 2.
    """

    def __init__(self, problem: str, path: Optional[str] = None, line: Optional[int] = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        return where + self.problem


def run_cli(main: Callable[[Optional[list]], object], argv: Optional[list] = None) -> None:
    """Run a CLI `main`, turning InputError into a one-line message and exit status 2."""
    try:
        main(argv)
    except InputError as error:
        # One line, whatever the message holds: scripts and log scrapers read the first line only.
        print("error: " + one_line(str(error)), file=sys.stderr)
        sys.exit(2)
