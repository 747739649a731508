"""Trimming error text to one line: library messages can run to many lines, a CLI error is one line."""

from __future__ import annotations

import re


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (library messages can run to many lines)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def one_line(text: str) -> str:
    """`text` with its line breaks (and the blanks around them) folded into single spaces."""
    return re.sub(r"\s*[\r\n]+\s*", " ", str(text).strip())
