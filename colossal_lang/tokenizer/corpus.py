"""Reading the text a tokenizer is trained on, protected against, or measured with.

jsonl files and folders give their `target` field (optionally only some categories); a `.txt` file gives
its non-empty lines. Sampling is seeded so that a run can be repeated.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

from colossal_lang.errors import InputError
from colossal_lang.io.jsonl import list_jsonl_files, read_text_lines, read_texts

PathLike = Union[str, Path]


def _split_inputs(inputs: Union[PathLike, Iterable[PathLike]]) -> List[str]:
    if isinstance(inputs, (str, Path)):
        return [part.strip() for part in str(inputs).split(",") if part.strip()]
    return [str(item) for item in inputs]


def load_texts(
    inputs: Union[PathLike, Iterable[PathLike]],
    categories: Optional[Sequence[str]] = None,
    field: str = "target",
) -> List[str]:
    """All documents of jsonl files/folders (`field` of each record) and plain .txt files (one per line)."""
    texts: List[str] = []
    jsonl_inputs: List[str] = []
    for item in _split_inputs(inputs):
        path = Path(item)
        if path.is_file() and path.suffix == ".txt":
            texts.extend(line for _, line in read_text_lines(path) if line.strip())
        else:
            jsonl_inputs.append(item)
    if jsonl_inputs:
        list_jsonl_files(jsonl_inputs)  # raises InputError for a missing path before any reading
        texts.extend(text for text in read_texts(jsonl_inputs, field=field, categories=categories) if text.strip())
    if not texts:
        raise InputError("no text found (check the paths and --categories)", ",".join(_split_inputs(inputs)))
    return texts


def sample_sentences(texts: Sequence[str], max_sentences: Optional[int], seed: int = 42) -> List[str]:
    """Split documents into lines and keep at most `max_sentences` of them, drawn at random with `seed`.

    Tokenizer trainers count frequencies, so a uniform sample of lines keeps the statistics of a large
    corpus at a fraction of the memory and time.
    """
    sentences = [line for text in texts for line in text.split("\n") if line.strip()]
    if max_sentences is None or max_sentences <= 0 or len(sentences) <= max_sentences:
        return sentences
    rng = random.Random(seed)
    return rng.sample(sentences, max_sentences)
