"""Expand a BPE tokenizer.json (byte-level, or SentencePiece-style with `▁`) with new vocabulary AND merges.

New tokens come out of ordinary BPE: each wanted piece is first segmented by the current merges, then
joined by appended merges (left to right, or right to left when that needs a merge into a token of the
base). Appended merges rank after all existing ones, so they only act where the old merges stopped.

Byte-level pieces must be written in the base's byte alphabet. A SentencePiece-style base (Gemma 3,
Llama 2 converted) lacks some characters (they fall back to `<0xNN>` bytes, which never merge), so those
characters are added as tokens first (`add_missing_chars`).

Ids: new tokens start after the highest id in use. `tokenizers` gives an added token that is not in the
model's vocabulary the next free vocabulary id when it loads a file (whatever id the file says), so the
added tokens after the vocabulary (Llama 3's 256, Qwen's 26, ...) are written into the vocabulary at their
own ids; `check_ids_kept` then proves every old token kept its id.
"""

from __future__ import annotations

import json
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from colossal_lang.tokenizer.expansion import PROTECTED_REASON, ExpansionPlan, dedupe

Merge = Tuple[str, str]


def parse_merges(raw_merges: Iterable) -> List[Merge]:
    """Merges as pairs, from either tokenizer.json form ("a b" strings or [a, b] lists)."""
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in raw_merges]


def bpe_segment(word: str, ranks: Dict[Merge, int]) -> List[str]:
    """BPE on one pre-tokenized word: repeatedly merge the adjacent pair with the lowest rank."""
    symbols = list(word)
    while len(symbols) > 1:
        best_rank, best_index = None, -1
        for index in range(len(symbols) - 1):
            rank = ranks.get((symbols[index], symbols[index + 1]))
            if rank is not None and (best_rank is None or rank < best_rank):
                best_rank, best_index = rank, index
        if best_rank is None:
            break
        symbols[best_index:best_index + 2] = [symbols[best_index] + symbols[best_index + 1]]
    return symbols


def _chain(segments: List[str], left_to_right: bool) -> List[Tuple[Merge, str]]:
    """The merges (and their results) that join `segments` one at a time."""
    steps = []
    if left_to_right:
        current = segments[0]
        for part in segments[1:]:
            steps.append(((current, part), current + part))
            current += part
    else:
        current = segments[-1]
        for part in reversed(segments[:-1]):
            steps.append(((part, current), part + current))
            current = part + current
    return steps


def plan_byte_level_expansion(config: dict, pieces: Sequence[str], blocked: Set[str] = frozenset(),
                              add_missing_chars: bool = False) -> ExpansionPlan:
    """Decide the new tokens and merges for `pieces` (in the base's notation) on top of tokenizer.json `config`.

    `add_missing_chars`: characters the base lacks become new tokens (SentencePiece-style bases);
    otherwise a piece holding one is rejected (byte-level bases hold every byte).
    """
    vocab: Dict[str, int] = dict(config["model"]["vocab"])
    base_tokens = set(vocab)
    ranks = {merge: rank for rank, merge in enumerate(parse_merges(config["model"]["merges"]))}
    added_ids = [token["id"] for token in config.get("added_tokens", [])]
    plan = ExpansionPlan(first_new_id=max(list(vocab.values()) + added_ids) + 1)
    wanted = set()
    for piece in dedupe(pieces):
        if piece in base_tokens:
            plan.already_present.append(piece)
            continue
        missing_chars = dedupe([char for char in piece if char not in vocab])
        if missing_chars and not add_missing_chars:
            plan.rejected[piece] = "holds a character outside the base's byte alphabet"
            continue
        if piece in blocked or any(char in blocked for char in missing_chars):
            plan.rejected[piece] = PROTECTED_REASON
            continue
        for char in missing_chars:  # a known character is a BPE symbol; merges can then join it
            vocab[char] = plan.first_new_id + len(plan.new_tokens)
            plan.new_tokens.append(char)
        segments = bpe_segment(piece, ranks)
        if segments == [piece]:  # an intermediate of an earlier piece, already reachable
            wanted.add(piece)
            plan.added.append(piece)
            continue
        chosen, reason = None, "needs a merge into a token of the base"
        for left_to_right in (True, False):
            steps = _chain(segments, left_to_right)
            if any(result in blocked for _, result in steps):
                reason = PROTECTED_REASON
                continue
            if all(result not in base_tokens or merge in ranks for merge, result in steps):
                chosen = steps
                break
        if chosen is None:
            plan.rejected[piece] = reason
            continue
        new_here = []
        for merge, result in chosen:
            if merge not in ranks:
                ranks[merge] = len(ranks)
                plan.merges.append(merge)
            if result not in vocab:
                vocab[result] = plan.first_new_id + len(plan.new_tokens)
                plan.new_tokens.append(result)
                new_here.append(result)
        if bpe_segment(piece, ranks) != [piece]:
            # An existing merge on an intermediate diverted the piece; keep the tokens (they are
            # reachable themselves) but report the piece.
            plan.rejected[piece] = "not produced by BPE after joining (an earlier merge diverts it)"
            continue
        wanted.add(piece)
        plan.added.append(piece)
    plan.intermediates = [token for token in plan.new_tokens if token not in wanted]
    return plan


def apply_byte_level_plan(config: dict, plan: ExpansionPlan) -> dict:
    """A new tokenizer.json dict with the plan's tokens and merges appended (added tokens keep their ids)."""
    # Copy only what changes: a deep copy of a 262k-token vocabulary costs seconds per protection round.
    expanded = {**config, "model": {**config["model"], "vocab": dict(config["model"]["vocab"]),
                                    "merges": list(config["model"]["merges"])}}
    vocab = expanded["model"]["vocab"]
    for added in expanded.get("added_tokens", []):
        vocab.setdefault(added["content"], added["id"])  # see the module docstring: pins the id on load
    for offset, token in enumerate(plan.new_tokens):
        vocab[token] = plan.first_new_id + offset
    raw = expanded["model"]["merges"]
    as_strings = bool(raw) and isinstance(raw[0], str)
    raw.extend(f"{a} {b}" if as_strings else [a, b] for a, b in plan.merges)
    return expanded


def check_ids_kept(base: dict, expanded: dict, first_new_id: int) -> None:
    """Raise ValueError unless every token of `base` (added ones included) has its declared id in
    `expanded` as `tokenizers` loads it, and every other token has an id from `first_new_id` on."""
    old = dict(base["model"]["vocab"])
    old.update((added["content"], added["id"]) for added in base.get("added_tokens", []))
    new = build_tokenizer(expanded).get_vocab(with_added_tokens=True)
    moved = [token for token, token_id in old.items() if new.get(token) != token_id]
    if moved:
        example = moved[0]
        raise ValueError(f"{len(moved)} tokens would change id (e.g. {example!r}: {old[example]} -> {new.get(example)})")
    low = [token for token, token_id in new.items() if token not in old and token_id < first_new_id]
    if low:
        raise ValueError(f"{len(low)} new tokens would take ids below {first_new_id} (e.g. {low[0]!r})")


def build_tokenizer(config: dict):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(json.dumps(config))


def fired_new_tokens(tokenizer, plan: ExpansionPlan, reference_texts: Sequence[str]) -> Set[str]:
    """New tokens that appear when `tokenizer` encodes the reference text."""
    fired_ids: Set[int] = set()
    for encoding in tokenizer.encode_batch(list(reference_texts), add_special_tokens=False):
        fired_ids.update(i for i in encoding.ids if i >= plan.first_new_id)
    return {plan.new_tokens[i - plan.first_new_id] for i in fired_ids}


def pieces_from_tokenizer_json(config: dict) -> List[str]:
    """The non-special tokens of a trained byte-level BPE, in id order (its most useful first)."""
    special = {token["content"] for token in config.get("added_tokens", [])}
    vocab = config["model"]["vocab"]
    return [token for token, _ in sorted(vocab.items(), key=lambda item: item[1]) if token not in special and len(token) > 1]
