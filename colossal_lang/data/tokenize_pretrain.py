"""Tokenize pretraining records into documents with an exact loss boundary between source and target.

`source + target` is tokenized as one string (so the tokens are those the model sees at inference,
with no artefacts from tokenizing the pieces separately) and the character offsets decide which tokens
are target: a token is learned when it holds at least one character of the target. Because tokens are
contiguous, this is one number per document, `loss_start`: labels are -100 before it, the token ids after.

Special tokens are added once, the way the tokenizer itself adds them (Mistral/LLaMA: `<s>` in front;
SmolLM2: nothing in front), and every document ends with the tokenizer's EOS as the document end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

from colossal_lang.data.batch_tokenize import TokenizedBatch, flatten_documents, plain_backend
from colossal_lang.errors import InputError

# What a special token's string inside the text becomes: the special token ("parse", as `tokenizer(text)`),
# or ordinary text ("split", as `tokenizer(text, split_special_tokens=True)`).
SPECIAL_TOKENS_IN_TEXT = ("parse", "split")


@dataclass(frozen=True)
class DocumentSpecials:
    """Token ids put around every document: what the tokenizer adds in front, and what ends a document."""

    prefix_ids: tuple
    suffix_ids: tuple


def document_specials(tokenizer) -> DocumentSpecials:
    """Find what `tokenizer` adds around a text by itself, and make sure a document ends with EOS once."""
    probe = "Ahoj"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    with_specials = tokenizer(probe, add_special_tokens=True)["input_ids"]
    start = _find_sublist(with_specials, plain)
    if start < 0:
        raise InputError("the tokenizer's special tokens change the text tokens; cannot place BOS/EOS")
    prefix = tuple(with_specials[:start])
    suffix = tuple(with_specials[start + len(plain):])
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise InputError("the tokenizer has no eos_token: cannot mark the end of a document")
    if eos_id not in suffix:
        suffix = suffix + (eos_id,)
    return DocumentSpecials(prefix_ids=prefix, suffix_ids=suffix)


def _find_sublist(haystack: List[int], needle: List[int]) -> int:
    for start in range(len(haystack) - len(needle) + 1):
        if haystack[start:start + len(needle)] == needle:
            return start
    return -1


def tokenize_pretrain_batch(records: List[dict], tokenizer, prefix_ids, suffix_ids,
                            special_tokens_in_text: str = "parse") -> TokenizedBatch:
    """Batch function of `tokenize_in_order`: [{source, target}, ...] → documents with their labels.

    The Rust tokenizer is called directly (the same ids as `tokenizer(text, add_special_tokens=False)`, with
    `split_special_tokens=True` for `special_tokens_in_text="split"`: a `</s>` in the text is then ordinary
    text, never the special id). `prefix_ids`/`suffix_ids` (BOS/EOS) are added as ids in both modes.
    Offsets are computed only when a record of the batch has a source: pure pretraining text (empty
    source) learns every token, and skipping offsets keeps the fast path fast.
    """
    if special_tokens_in_text not in SPECIAL_TOKENS_IN_TEXT:
        raise ValueError(f"special_tokens_in_text must be one of {SPECIAL_TOKENS_IN_TEXT}")
    backend = plain_backend(tokenizer, split_special_tokens=special_tokens_in_text == "split")
    sources = [record["source"] for record in records]
    if any(sources):
        encodings = backend.encode_batch([source + record["target"] for source, record in zip(sources, records)],
                                         add_special_tokens=False)
        first_targets = [first_token_ending_after(encoding.offsets, len(source)) if source else 0
                         for source, encoding in zip(sources, encodings)]
    else:
        encodings = backend.encode_batch_fast([record["target"] for record in records], add_special_tokens=False)
        first_targets = [0] * len(records)
    prefix, suffix = list(prefix_ids), list(suffix_ids)
    documents = [prefix + encoding.ids + suffix for encoding in encodings]
    return flatten_documents(documents, (len(prefix) + first for first in first_targets))


def first_token_ending_after(offsets, boundary: int) -> int:
    """Index of the first token whose character span ends after `boundary` (binary search: ends grow)."""
    low, high = 0, len(offsets)
    while low < high:
        middle = (low + high) // 2
        if offsets[middle][1] > boundary:
            high = middle
        else:
            low = middle + 1
    return low


def special_token_ids(tokenizer) -> set:
    """Ids of the tokenizer's special tokens (named ones and added tokens marked special)."""
    ids = set(tokenizer.all_special_ids)
    ids.update(token_id for token_id, added in tokenizer.added_tokens_decoder.items() if added.special)
    return ids


def documents_with_special_ids_inside(token_ids, doc_offsets, special_ids, prefix_length: int, suffix_length: int):
    """Per document, whether a special id occurs between the added BOS and EOS (its text held e.g. `</s>`)."""
    inside = np.zeros(len(doc_offsets) - 1, dtype=bool)
    hits = np.flatnonzero(np.isin(token_ids, np.asarray(sorted(special_ids), dtype=token_ids.dtype)))
    if len(hits):
        doc = np.searchsorted(doc_offsets, hits, side="right") - 1
        position, length = hits - doc_offsets[doc], doc_offsets[doc + 1] - doc_offsets[doc]
        body = (position >= prefix_length) & (position < length - suffix_length)
        inside[doc[body]] = True
    return inside
