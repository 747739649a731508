"""Reading jsonl and text files the way every stage needs: sorted file lists, exact line numbers, clear errors.

Both read UTF-8 lines through `iter_raw_lines`: a byte-order mark and CRLF line ends are accepted.

Each bad line raises InputError naming the file, the line and the problem, or, under the skip policy,
is counted by reason in a `collections.Counter` the caller reports.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Tuple, Union

from colossal_lang.errors import InputError

PathLike = Union[str, Path]
ON_ERROR_CHOICES = ("raise", "skip")


def list_jsonl_files(inputs: Union[PathLike, Iterable[PathLike]]) -> List[Path]:
    """Expand folders and files (a comma-separated string is accepted) into a sorted list of .jsonl files."""
    if isinstance(inputs, (str, Path)):
        inputs = [part for part in str(inputs).split(",") if part.strip()]
    files: List[Path] = []
    for item in inputs:
        path = Path(str(item).strip())
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
            if not found:
                raise InputError("folder holds no .jsonl file", path)
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError("no such file or folder", path)
    return files


def iter_jsonl(
    path: PathLike, on_error: str = "raise", skipped: Optional[Counter] = None
) -> Iterator[Tuple[int, dict]]:
    """Yield (line number, record) for each JSON object in `path`.

    Accepts a UTF-8 byte-order mark and CRLF line ends; blank lines are passed over. Invalid UTF-8,
    invalid JSON and values that are not objects raise InputError (on_error="raise") or are counted
    in `skipped` under their reason (on_error="skip").
    """
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}")
    path = Path(path)
    for line_number, raw in iter_raw_lines(path):
        if not raw.strip():
            continue
        problem = None
        record = None
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            problem = f"invalid UTF-8 at byte {error.start}"
        except json.JSONDecodeError as error:
            problem = f"invalid JSON: {error.msg} at column {error.colno}"
        if problem is None and not isinstance(record, dict):
            problem = f"expected a JSON object, got {type(record).__name__}"
        if problem is not None:
            report_bad_record(path, line_number, problem, on_error, skipped)
            continue
        yield line_number, record


def iter_raw_lines(path: PathLike) -> Iterator[Tuple[int, bytes]]:
    """(line number, bytes) of each line of `path`, without its line end and without a leading byte-order mark."""
    with Path(path).open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            yield line_number, raw.rstrip(b"\r\n")


def read_text_lines(path: PathLike) -> Iterator[Tuple[int, str]]:
    """(line number, line) of a UTF-8 text file, without line ends; a byte-order mark and CRLF are accepted.

    Invalid UTF-8 raises InputError naming the file and line.
    """
    for line_number, raw in iter_raw_lines(path):
        try:
            yield line_number, raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(f"invalid UTF-8 at byte {error.start}", path, line_number) from None


def report_bad_record(path: PathLike, line: int, problem: str, on_error: str, skipped: Optional[Counter]) -> None:
    """Raise InputError, or count the problem's kind (the text before any ':') in `skipped`."""
    if on_error == "raise":
        raise InputError(problem, path, line)
    if skipped is not None:
        skipped[problem.split(":")[0]] += 1


def read_texts(
    inputs: Union[PathLike, Iterable[PathLike]],
    field: str = "target",
    categories: Optional[Iterable[str]] = None,
) -> Iterator[str]:
    """Yield the `field` string of every record (optionally only those whose `category` is listed)."""
    wanted = None if categories is None else set(categories)
    for path in list_jsonl_files(inputs):
        for line_number, record in iter_jsonl(path):
            if wanted is not None and record.get("category") not in wanted:
                continue
            value = record.get(field)
            if not isinstance(value, str):
                raise InputError(f"field {field!r} missing or not a string", path, line_number)
            yield value
