"""Record schemas: validate pretraining and SFT jsonl records, naming the file and line of each bad one.

Validation happens in the main process as the records stream to tokenization, so that a bad record
is reported with its exact file and line (or counted by reason under `on_error="skip"`), never as a
crash inside a tokenizer worker.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from colossal_lang.io.jsonl import iter_jsonl, report_bad_record

PRETRAIN_FIELDS = ("source", "target", "category")
SFT_ROLE_ALIASES = {"human": "user", "user": "user", "assistant": "assistant", "system": "system"}
COLOSSAL_ROLES = ("human", "assistant")
OPENAI_ROLES = ("system", "user", "assistant")
DEFAULT_SFT_CATEGORY = "sft"
# Half of a UTF-16 surrogate pair: valid JSON (`"\\ud83d"`), but no Unicode text a tokenizer can encode.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> Optional[str]:
    """Why a string cannot be tokenized, or None (JSON decoding already joined every valid pair)."""
    if text.isascii():
        return None
    found = LONE_SURROGATE.search(text)
    if found is None:
        return None
    return f"holds a lone surrogate \\u{ord(found.group()):04x} at character {found.start()}"


def validate_pretrain_record(record: dict) -> Tuple[Optional[dict], Optional[str]]:
    """Return (clean record, None) or (None, problem) for a `{"source", "target", "category"}` record."""
    missing = [name for name in PRETRAIN_FIELDS if name not in record]
    if missing:
        return None, f"missing field: {', '.join(repr(name) for name in missing)}"
    extra = sorted(set(record) - set(PRETRAIN_FIELDS))
    if extra:
        return None, f"unexpected field: {', '.join(repr(name) for name in extra)}"
    for name in PRETRAIN_FIELDS:
        if not isinstance(record[name], str):
            return None, f"wrong type: field {name!r} must be a string, got {type(record[name]).__name__}"
        problem = text_problem(record[name])
        if problem is not None:
            return None, f"invalid text: field {name!r} {problem}"
    if record["target"] == "":
        return None, "empty target: field 'target' is an empty string"
    if record["category"].strip() == "":
        return None, "empty category: field 'category' is an empty string"
    return {name: record[name] for name in PRETRAIN_FIELDS}, None


def validate_sft_record(record: dict) -> Tuple[Optional[dict], Optional[str]]:
    """Return ({"messages": [{"role", "content"}...], "category"}, None) or (None, problem).

    Accepts Colossal-LLaMA's `from: human|assistant` and the OpenAI `role: system|user|assistant`
    forms. A conversation is an optional leading system message, then user/assistant turns that
    alternate, starting with the user and ending with the assistant (the last turn is what is learned).
    """
    extra = sorted(set(record) - {"messages", "category"})
    if extra:
        return None, f"unexpected field: {', '.join(repr(name) for name in extra)}"
    if "messages" not in record:
        return None, "missing field: 'messages'"
    messages = record["messages"]
    if not isinstance(messages, list):
        return None, f"wrong type: field 'messages' must be a list, got {type(messages).__name__}"
    if not messages:
        return None, "empty messages: the conversation has no turns"
    category = record.get("category", DEFAULT_SFT_CATEGORY)
    if not isinstance(category, str) or not category.strip():
        return None, "wrong type: field 'category' must be a non-empty string"
    problem = text_problem(category)
    if problem is not None:
        return None, f"invalid text: field 'category' {problem}"
    clean: List[Dict[str, str]] = []
    for index, message in enumerate(messages):
        where = f"message {index}"
        if not isinstance(message, dict):
            return None, f"wrong type: {where} must be an object, got {type(message).__name__}"
        role_key = "role" if "role" in message else "from" if "from" in message else None
        if role_key is None:
            return None, f"missing field: {where} has neither 'role' nor 'from'"
        extra_keys = sorted(set(message) - {role_key, "content"})
        if extra_keys:
            return None, f"unexpected field: {where} has {', '.join(repr(k) for k in extra_keys)}"
        allowed = OPENAI_ROLES if role_key == "role" else COLOSSAL_ROLES
        raw_role = message[role_key]
        if raw_role not in allowed:
            return None, f"unknown role: {where} has {role_key} {raw_role!r} (expected one of {', '.join(allowed)})"
        content = message.get("content")
        if not isinstance(content, str):
            return None, f"wrong type: {where} content must be a string, got {type(content).__name__}"
        if not content.strip():
            return None, f"empty content: {where} ({raw_role}) has no text"
        problem = text_problem(content)
        if problem is not None:
            return None, f"invalid text: {where} content {problem}"
        clean.append({"role": SFT_ROLE_ALIASES[raw_role], "content": content})
    turns = clean[1:] if clean[0]["role"] == "system" else clean
    if not turns:
        return None, "no turns: the conversation holds only a system message"
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if message["role"] != expected:
            position = index + (len(clean) - len(turns))
            if index == 0:
                return None, f"assistant first: message {position} is {message['role']!r}, the first turn must be the user's"
            return None, f"not alternating: message {position} is {message['role']!r}, expected {expected!r}"
    if turns[-1]["role"] != "assistant":
        return None, "no final answer: the last turn must be the assistant's"
    return {"messages": clean, "category": category}, None


def file_digest(path) -> Tuple[str, int]:
    """(sha256 of the file's bytes, its newline count: a progress bar's total), in one read."""
    digest, lines = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            lines += block.count(b"\n")
    return digest.hexdigest(), lines


@dataclass
class ReadResult:
    """What reading saw: records read and kept, skipped by reason, files read (counts only: no per-record state)."""

    records_read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    input_files: List[str] = field(default_factory=list)


def iter_validated(
    files: Iterable[Path],
    validate: Callable[[dict], Tuple[Optional[dict], Optional[str]]],
    on_error: str,
    result: ReadResult,
) -> Iterator[Tuple[dict, str, int]]:
    """Yield (clean record, file, line) for every valid record of `files` in order, counting in `result`.

    Raises InputError on the first bad record (`on_error="raise"`) or counts it by reason. An empty
    file is an input error either way: it is almost always a failed export, not a wish. When the
    records are exhausted, `result` holds the final counts (reasons not yet grouped: `normalize_reasons`).
    """
    for path in files:
        path_text = str(path)
        seen_before = result.records_read + sum(result.skipped.values())
        for line_number, record in iter_jsonl(path, on_error=on_error, skipped=result.skipped):
            result.records_read += 1
            clean, problem = validate(record)
            if problem is not None:
                report_bad_record(path, line_number, problem, on_error, result.skipped)
                continue
            result.kept += 1
            yield clean, path_text, line_number
        if result.records_read + sum(result.skipped.values()) == seen_before:
            report_bad_record(path, None, "empty file: no records", on_error, result.skipped)
        result.input_files.append(path_text)
    # Every non-blank line is a record read, including those that did not parse.
    result.records_read = result.kept + sum(count for reason, count in result.skipped.items() if reason != "empty file")


def normalize_reasons(skipped: Counter) -> Counter:
    """Group reasons that carry a position or a type ("invalid UTF-8 at byte 7") under one name."""
    grouped: Counter = Counter()
    for reason, count in skipped.items():
        reason = re.sub(r" at byte \d+$", "", reason)
        reason = re.sub(r", got \w+$", "", reason)
        grouped[reason] += count
    return grouped
