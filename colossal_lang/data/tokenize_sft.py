"""Tokenize conversations: labels on exactly the assistant contents and their end-of-turn tokens.

The rendered text is tokenized once (the template already holds BOS and the turn markers, so no
special tokens are added), and a token is learned when its character span overlaps the span from an
assistant content through its end-of-turn token (see `chat_templates.render_conversation`). Nothing scans for
special ids, so a template whose turns end with text rather than one special token still works.

Too long conversations lose whole trailing turns (user + assistant), never part of a turn; one whose
first answer already does not fit is reported as a problem for the caller to raise or skip.
"""

from __future__ import annotations

from typing import List

import numpy as np

from colossal_lang.data.batch_tokenize import TokenizedBatch, plain_backend
from colossal_lang.data.chat_templates import ChatTemplate, render_conversation
from colossal_lang.data.tokenize_pretrain import first_token_ending_after


def learned_mask(offsets, spans) -> List[bool]:
    """For each token (start, end), whether it overlaps one of the sorted character `spans`."""
    mask, span_index = [], 0
    for start, end in offsets:
        while span_index < len(spans) and spans[span_index][1] <= start:
            span_index += 1
        learned = False
        if span_index < len(spans):
            span_start, span_end = spans[span_index]
            learned = start < span_end and end > span_start
        mask.append(learned)
    return mask


def tokenize_sft_batch(records: List[dict], tokenizer, template: ChatTemplate, max_length: int) -> TokenizedBatch:
    """Batch function of `tokenize_in_order`: [{messages}, ...] → conversations with assistant labels.

    A conversation that cannot be rendered, or whose first answer does not fit, has no tokens and its
    problem is returned for the caller to raise or skip with the record's file and line.
    """
    rendered, problems = [], []
    for record in records:
        try:
            rendered.append(render_conversation(tokenizer, template, record["messages"]))
            problems.append("")
        except ValueError as error:
            rendered.append(None)
            problems.append(f"template error: {error}")
    encodings = plain_backend(tokenizer).encode_batch(
        [item.text if item is not None else "" for item in rendered], add_special_tokens=False)
    all_ids, all_learned, truncated = [], [], []
    for index, (item, encoding) in enumerate(zip(rendered, encodings)):
        token_ids, offsets, was_truncated = encoding.ids, encoding.offsets, False
        if item is not None and len(token_ids) > max_length:
            # Keep the longest run of whole turns that fits.
            fits = [first_token_ending_after(offsets, end) for end in item.turn_ends]
            kept = [count for count in fits if count <= max_length]
            if not kept:
                problems[index] = (f"first turn too long: {fits[0]} tokens through the first answer, "
                                   f"max_length is {max_length}")
            else:
                token_ids, offsets, was_truncated = token_ids[: kept[-1]], offsets[: kept[-1]], True
        if item is None or problems[index]:
            token_ids, learned = [], []
        else:
            learned = learned_mask(offsets, item.learned_spans)
        all_ids.append(token_ids)
        all_learned.append(learned)
        truncated.append(was_truncated)
    lengths = np.fromiter(map(len, all_ids), dtype=np.int64, count=len(all_ids))
    flat_ids = np.array([token for ids in all_ids for token in ids], dtype=np.int32)
    flat_learned = np.array([flag for learned in all_learned for flag in learned], dtype=bool)
    return TokenizedBatch(flat_ids, flat_learned, lengths, np.array(truncated, dtype=bool), problems)
