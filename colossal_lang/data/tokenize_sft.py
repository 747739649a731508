"""Tokenize conversations: labels on exactly the assistant contents and their end-of-turn tokens.

The rendered text is tokenized once (the template already holds BOS and the turn markers, so no
special tokens are added), and a token is learned when its character span overlaps the span from an
assistant content through its end-of-turn token (see `chat_templates.render_conversation`). Nothing scans for
special ids, so a template whose turns end with text rather than one special token still works.

Too long conversations lose whole trailing turns (user + assistant), never part of a turn; one whose
first answer already does not fit is reported as a problem for the caller to raise or skip.
"""

from __future__ import annotations

from typing import Dict, List

from colossal_lang.data.chat_templates import ChatTemplate, render_conversation
from colossal_lang.data.tokenize_pretrain import IGNORE_INDEX, first_token_ending_after


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


def tokenize_sft_batch(batch: Dict[str, list], tokenizer, template: ChatTemplate, max_length: int) -> Dict[str, list]:
    """`datasets.map(batched=True)` function: {messages} → {input_ids, labels, truncated, problem}."""
    rendered, problems = [], []
    for messages in batch["messages"]:
        try:
            rendered.append(render_conversation(tokenizer, template, messages))
            problems.append("")
        except ValueError as error:
            rendered.append(None)
            problems.append(f"template error: {error}")
    texts = [item.text if item is not None else "" for item in rendered]
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True,
                        return_attention_mask=False, return_token_type_ids=False)
    out = {"input_ids": [], "labels": [], "truncated": [], "problem": problems}
    for index, item in enumerate(rendered):
        token_ids, offsets = encoded["input_ids"][index], encoded["offset_mapping"][index]
        truncated = False
        if item is not None and len(token_ids) > max_length:
            # Keep the longest run of whole turns that fits.
            fits = [first_token_ending_after(offsets, end) for end in item.turn_ends]
            kept = [count for count in fits if count <= max_length]
            if not kept:
                out["problem"][index] = (f"first turn too long: {fits[0]} tokens through the first answer, "
                                         f"max_length is {max_length}")
            else:
                token_ids, offsets, truncated = token_ids[: kept[-1]], offsets[: kept[-1]], True
        if item is None or out["problem"][index]:
            token_ids, labels = [], []
        else:
            mask = learned_mask(offsets, item.learned_spans)
            labels = [token if learned else IGNORE_INDEX for token, learned in zip(token_ids, mask)]
        out["input_ids"].append(token_ids)
        out["labels"].append(labels)
        out["truncated"].append(truncated)
    return out
