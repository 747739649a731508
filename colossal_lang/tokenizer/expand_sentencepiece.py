"""Expand a SentencePiece BPE model (LLaMA-2, Mistral) by editing its ModelProto.

SentencePiece BPE joins any adjacent pair whose concatenation is a piece, best score first. New pieces
therefore get scores below every existing piece (Colossal-LLaMA's score 0 outranks the whole base
vocabulary and re-segments English), and each wanted piece is joined from its current segmentation
through added sub-pieces, so that it can actually be produced.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Set

import numpy as np

from colossal_lang.tokenizer.expansion import PROTECTED_REASON, ExpansionPlan, dedupe


def load_model_proto(model_bytes: bytes):
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    return proto


def spm_bpe_segment(text: str, scores: Dict[str, float]) -> List[str]:
    """SentencePiece BPE on a normalized string: join the best-scored adjacent pair that is a piece."""
    symbols = list(text)
    while len(symbols) > 1:
        best_score, best_index = None, -1
        for index in range(len(symbols) - 1):
            score = scores.get(symbols[index] + symbols[index + 1])
            if score is not None and (best_score is None or score > best_score):
                best_score, best_index = score, index
        if best_score is None:
            break
        symbols[best_index:best_index + 2] = [symbols[best_index] + symbols[best_index + 1]]
    return symbols


def plan_sentencepiece_expansion(proto, pieces: Sequence[str], blocked: Set[str] = frozenset()) -> ExpansionPlan:
    """Decide the new pieces (and their scores, in order) for `pieces` written with `▁` for spaces."""
    if proto.trainer_spec.model_type != proto.trainer_spec.BPE:
        raise ValueError("only SentencePiece BPE models can be expanded (LLaMA-2, Mistral)")
    normal = proto.SentencePiece.NORMAL
    existing = {piece.piece for piece in proto.pieces}
    scores = {piece.piece: piece.score for piece in proto.pieces if piece.type == normal}
    plan = ExpansionPlan(first_new_id=len(proto.pieces))
    lowest = min(scores.values())
    # Scores are float32 in the proto: below Mistral's -1e9 whitespace pieces, steps of 1 would collapse.
    step = max(1.0, 2.0 * float(np.spacing(np.float32(2.0 * abs(lowest) + 1.0))))
    next_score = lowest - step
    wanted: Set[str] = set()

    def add(token: str) -> None:
        nonlocal next_score
        scores[token] = next_score
        next_score -= step
        plan.new_tokens.append(token)

    for piece in dedupe(pieces):
        if piece in existing:
            plan.already_present.append(piece)
            continue
        if piece in blocked:
            plan.rejected[piece] = PROTECTED_REASON
            continue
        if piece.startswith("<") and piece.endswith(">") and len(piece) > 2:
            plan.rejected[piece] = "looks like a control or byte piece"
            continue
        # Characters missing from the base fall back to bytes and can never be joined: add them first.
        missing_chars = [char for char in dedupe(piece) if char not in scores]
        if any(char in blocked for char in missing_chars):
            plan.rejected[piece] = PROTECTED_REASON
            continue
        segments = spm_bpe_segment(piece, {**scores, **{char: next_score for char in missing_chars}})
        joins = []
        current = segments[0]
        for part in segments[1:]:
            current += part
            joins.append(current)
        if any(join in blocked for join in joins):
            plan.rejected[piece] = PROTECTED_REASON
            continue
        for token in missing_chars + [join for join in joins if join not in scores]:
            add(token)
        if spm_bpe_segment(piece, scores) != [piece]:
            plan.rejected[piece] = "not produced by BPE after joining (a better-scored pair diverts it)"
            continue
        wanted.add(piece)
        plan.added.append(piece)
    plan.intermediates = [token for token in plan.new_tokens if token not in wanted]
    plan.scores = {token: scores[token] for token in plan.new_tokens}
    return plan


def apply_sentencepiece_plan(proto, plan: ExpansionPlan):
    """A copy of `proto` with the plan's pieces appended (NORMAL type, their planned scores)."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    expanded = model_pb2.ModelProto()
    expanded.CopyFrom(proto)
    for token in plan.new_tokens:
        new_piece = expanded.pieces.add()
        new_piece.piece = token
        new_piece.score = plan.scores[token]
        new_piece.type = model_pb2.ModelProto.SentencePiece.NORMAL
    return expanded


def processor_for(proto):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def fired_new_pieces(proto, plan: ExpansionPlan, reference_texts: Sequence[str]) -> Set[str]:
    """New pieces that appear when the expanded model encodes the reference text."""
    processor = processor_for(apply_sentencepiece_plan(proto, plan))
    fired_ids: Set[int] = set()
    for ids in processor.encode(list(reference_texts)):
        fired_ids.update(i for i in ids if i >= plan.first_new_id)
    return {plan.new_tokens[i - plan.first_new_id] for i in fired_ids}


def pieces_from_model_proto(proto) -> List[str]:
    """The NORMAL pieces of a trained SentencePiece model, in id order (single characters too: the base may lack them)."""
    return [p.piece for p in proto.pieces if p.type == p.NORMAL]
