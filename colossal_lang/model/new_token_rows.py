"""Which rows a grown vocabulary needs, and where each new row starts: tensors in, tensors out.

FOCUS/WECHSEL style: these functions only compute; `init_model.expand_model` does the model surgery.

- `map_vocabularies` resolves every target token by its string (or through a vocabulary-swap alignment
  map), so the rows to copy and the new token ids never depend on where the source checkpoint's rows end.
- `pieces_of_new_tokens` splits each new token into source-tokenizer pieces.
- `initialize_new_rows` turns a source weight matrix (embeddings or head) into the new tokens' rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional

import torch
from tqdm.auto import tqdm

from colossal_lang.errors import InputError

INIT_METHODS = ("mean_of_pieces", "mean", "random", "align")
# mean_of_pieces head rows (the shared row of a tied model) start at mean + PIECE_WEIGHT * (pieces - mean):
# chosen on SmolLM2 + 13,281 Czech tokens, where it brings English bits/byte from 1.015x to 1.004x the base
# model while Czech moves from 1.069x to 1.076x (docs/model_init.md has the sweep).
PIECE_WEIGHT = 0.8
DUMMY_PREFIX = "\u2581"  # SentencePiece's word-boundary mark, "▁"
SPM_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")

# How much a piece says about the token it is part of; only the best class present in a token is averaged.
CONTENT, BYTE, BOUNDARY_OR_SPECIAL = 0, 1, 2


@dataclass
class VocabularyMap:
    """How target ids relate to source rows. Ids index the target vocabulary; rows index the source weights."""

    target_size: int  # len(target tokenizer): ids at or above it are padding
    kept_target_ids: torch.Tensor  # target ids whose row is copied ...
    kept_source_ids: torch.Tensor  # ... from these source rows
    new_token_ids: torch.Tensor  # target ids that need a fresh row


@dataclass
class TokenPieces:
    """Each new token as a bag of source rows, flattened: `piece_ids[k]` belongs to new token `segment[k]`."""

    piece_ids: torch.Tensor
    segment: torch.Tensor
    num_tokens: int
    num_left_out: int  # pieces dropped because the token had more informative ones
    num_without_pieces: int  # tokens that encode to nothing (they get the mean row)


def load_alignment(target_tokenizer_path) -> dict:
    """Read `token_alignment.json` (written by a vocabulary swap) as {new id: old id}."""
    from pathlib import Path

    path = Path(target_tokenizer_path) / "token_alignment.json"
    if not path.is_file():
        raise InputError("--init align needs a token_alignment.json beside the target tokenizer", path)
    try:
        new_to_old = json.loads(path.read_text(encoding="utf-8"))["new_to_old"]
        return {int(new_id): int(old_id) for new_id, old_id in new_to_old.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"expected {{'new_to_old': {{'<new id>': <old id>}}}}: {error!r}", path) from None


def map_vocabularies(source_tokenizer, target_tokenizer, alignment: Optional[dict] = None) -> VocabularyMap:
    """Resolve target ids against the source vocabulary by token string (expansion) or through `alignment`.

    Expansion requires every source token to be in the target: a target that drops some is a swap, and a
    swap needs an alignment map. Raises InputError (path=None) when that is not the case.
    """
    target_vocab = target_tokenizer.get_vocab()
    target_size = max(len(target_tokenizer), max(target_vocab.values()) + 1)
    if alignment is None:
        source_vocab = source_tokenizer.get_vocab()
        missing = [token for token in source_vocab if token not in target_vocab]
        if missing:
            raise InputError(
                f"target tokenizer lacks {len(missing)} of the source's {len(source_vocab)} tokens "
                f"(e.g. {missing[:5]!r}); it is not an expansion: for a vocabulary swap pass --init align "
                "with a token_alignment.json"
            )
        pairs = sorted((target_vocab[token], source_id) for token, source_id in source_vocab.items())
    else:
        bad = [new_id for new_id in alignment if not 0 <= new_id < target_size]
        if bad:
            raise InputError(f"token_alignment.json names target ids outside 0..{target_size - 1}: {bad[:5]}")
        pairs = sorted(alignment.items())
    kept_target_ids = torch.tensor([target_id for target_id, _ in pairs], dtype=torch.long)
    kept_source_ids = torch.tensor([source_id for _, source_id in pairs], dtype=torch.long)
    is_new = torch.ones(target_size, dtype=torch.bool)
    is_new[kept_target_ids] = False
    return VocabularyMap(target_size, kept_target_ids, kept_source_ids, is_new.nonzero().flatten())


def token_alphabet(tokenizer) -> Optional[str]:
    """'byte_level' or 'metaspace': how a fast tokenizer spells its tokens (None when neither is recognisable)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    pipeline = json.dumps([spec.get("normalizer"), spec.get("pre_tokenizer"), spec.get("decoder")])
    if '"ByteLevel"' in pipeline:
        return "byte_level"
    if DUMMY_PREFIX in pipeline or "\\u2581" in pipeline or '"Metaspace"' in pipeline:
        return "metaspace"
    return None


def piece_classes(source_tokenizer, num_rows: int) -> torch.Tensor:
    """CONTENT, BYTE or BOUNDARY_OR_SPECIAL for every source row.

    BYTE: SentencePiece byte-fallback pieces `<0xNN>`. BOUNDARY_OR_SPECIAL: the lone dummy prefix `▁`,
    special and unknown tokens, and rows past the tokenizer (checkpoint padding).

    Byte-level BPE's single-byte tokens stay CONTENT, even the fragments (>= 0x80) of multi-byte
    characters: leaving those out measured slightly worse on held-out Czech (3.20 vs 3.16 bits per byte
    for SmolLM2 + 12.6k Czech tokens), since in that alphabet they are the only spelling of letters like ř.
    """
    classes = torch.full((num_rows,), BOUNDARY_OR_SPECIAL, dtype=torch.long)
    special = set(source_tokenizer.all_special_ids)
    special.update(i for i, added in source_tokenizer.added_tokens_decoder.items() if added.special)
    for token, source_id in source_tokenizer.get_vocab().items():
        if source_id >= num_rows or source_id in special or token == DUMMY_PREFIX:
            continue
        if SPM_BYTE_PIECE.match(token):
            classes[source_id] = BYTE
        else:
            classes[source_id] = CONTENT
    return classes


def pieces_of_new_tokens(
    source_tokenizer, target_tokenizer, new_token_ids: torch.Tensor, num_source_rows: int, progress: bool = True
) -> TokenPieces:
    """Encode each new token with the source tokenizer and keep its most informative pieces.

    When both tokenizers spell tokens the same way (both byte-level, or both `▁` metaspace), the token's
    string goes straight through the source BPE model: exact even for tokens that are a fragment of a
    UTF-8 character. Otherwise (added tokens, swaps between families) the token is decoded to its surface
    text and that text is encoded. Within a token, only pieces of the best class present are kept: the
    dummy prefix `▁`, byte and special pieces are left out whenever the token has other pieces.
    """
    same_alphabet = token_alphabet(source_tokenizer) is not None and token_alphabet(
        source_tokenizer
    ) == token_alphabet(target_tokenizer)
    source_model = source_tokenizer.backend_tokenizer.model
    added = target_tokenizer.added_tokens_decoder
    pieces_per_token: list = [None] * len(new_token_ids)
    surface_texts, surface_positions = [], []
    tokens = target_tokenizer.convert_ids_to_tokens(new_token_ids.tolist())
    for position, (token_id, token) in enumerate(
        tqdm(list(zip(new_token_ids.tolist(), tokens)), desc="pieces of new tokens", disable=not progress, unit="tok")
    ):
        if token_id in added:
            surface_texts.append(added[token_id].content)
            surface_positions.append(position)
        elif token is None:  # an id no token owns (a gap in the vocabulary): no pieces, so the mean row
            pieces_per_token[position] = []
        elif same_alphabet:
            pieces_per_token[position] = [piece.id for piece in source_model.tokenize(token)]
        else:
            surface_texts.append(target_tokenizer.convert_tokens_to_string([token]))
            surface_positions.append(position)
    if surface_texts:
        encoded = source_tokenizer(surface_texts, add_special_tokens=False)["input_ids"]
        for position, ids in zip(surface_positions, encoded):
            pieces_per_token[position] = ids

    lengths = torch.tensor([len(ids) for ids in pieces_per_token], dtype=torch.long)
    piece_ids = torch.tensor([i for ids in pieces_per_token for i in ids], dtype=torch.long)
    segment = torch.repeat_interleave(torch.arange(len(pieces_per_token)), lengths)
    if len(piece_ids) and int(piece_ids.max()) >= num_source_rows:
        raise InputError(f"source tokenizer produced id {int(piece_ids.max())} but the model has {num_source_rows} rows")

    # Keep, per token, only the pieces whose class equals the best (lowest) class present in that token.
    classes = piece_classes(source_tokenizer, num_source_rows)[piece_ids]
    best = torch.full((len(pieces_per_token),), BOUNDARY_OR_SPECIAL, dtype=torch.long)
    best = best.scatter_reduce(0, segment, classes, reduce="amin", include_self=True)
    keep = classes == best[segment]
    return TokenPieces(
        piece_ids=piece_ids[keep],
        segment=segment[keep],
        num_tokens=len(pieces_per_token),
        num_left_out=int((~keep).sum()),
        num_without_pieces=int((lengths == 0).sum()),
    )


def mean_of_rows(weight: torch.Tensor, num_real_rows: int, chunk: int = 1 << 14) -> torch.Tensor:
    """Mean of the rows of real tokens (checkpoint padding rows left out), in float32.

    Summed in chunks so that a bf16/fp16 matrix is never copied whole to float32.
    """
    total = torch.zeros(weight.shape[1], dtype=torch.float32)
    for start in range(0, num_real_rows, chunk):
        total += weight[start : min(start + chunk, num_real_rows)].float().sum(dim=0)
    return total / num_real_rows


def mean_of_pieces(weight: torch.Tensor, pieces: TokenPieces, fallback_row: torch.Tensor, chunk: int = 1 << 16):
    """Segment mean of source rows: a gather and an index_add_ per chunk of pieces (chunks bound the gather's memory)."""
    sums = torch.zeros(pieces.num_tokens, weight.shape[1], dtype=torch.float32)
    for start in range(0, len(pieces.piece_ids), chunk):
        rows = weight.index_select(0, pieces.piece_ids[start : start + chunk]).float()
        sums.index_add_(0, pieces.segment[start : start + chunk], rows)
    counts = torch.bincount(pieces.segment, minlength=pieces.num_tokens).unsqueeze(1)
    means = sums / counts.clamp(min=1)
    means[counts.squeeze(1) == 0] = fallback_row
    return means


def check_piece_weight(piece_weight: float) -> None:
    if not 0.0 <= piece_weight <= 1.0:  # also refuses NaN
        raise InputError(f"piece_weight must be between 0 and 1 (1: plain mean of the pieces), not {piece_weight!r}")


def initialize_new_rows(
    weight: torch.Tensor,
    method: str,
    num_new: int,
    num_real_rows: int,
    pieces: Optional[TokenPieces] = None,
    initializer_range: float = 0.02,
    generator: Optional[torch.Generator] = None,
    piece_weight: float = 1.0,
) -> torch.Tensor:
    """Rows (float32, num_new x hidden) for new tokens from one source matrix (input embeddings or head).

    `mean_of_pieces` (needs `pieces`) averages each token's pieces and then moves the result toward the
    mean row: mean + piece_weight * (pieces - mean), so 1.0 is the plain mean of the pieces and 0.0 is
    `mean` (Hewitt 2021: rows near the mean row take little probability from the old vocabulary).
    `align` averages the pieces of its unaligned remainder (piece_weight is not applied);
    `mean` repeats the mean source row; `random` draws N(0, initializer_range), Llama's own initialiser.
    """
    if method not in INIT_METHODS:
        raise InputError(f"unknown init method {method!r}; choose one of {', '.join(INIT_METHODS)}")
    check_piece_weight(piece_weight)
    if num_new == 0:
        return torch.empty(0, weight.shape[1], dtype=torch.float32)
    mean_row = mean_of_rows(weight, num_real_rows)
    if method in ("mean_of_pieces", "align"):
        if pieces is None or pieces.num_tokens != num_new:
            raise ValueError("mean_of_pieces needs the pieces of exactly the new tokens")
        rows = mean_of_pieces(weight, pieces, mean_row)
        if method == "mean_of_pieces" and piece_weight != 1.0:
            rows.sub_(mean_row).mul_(piece_weight).add_(mean_row)  # in place: no second (num_new x hidden) copy
        return rows
    if method == "mean":
        return mean_row.expand(num_new, -1).clone()
    rows = torch.empty(num_new, weight.shape[1], dtype=torch.float32)
    return rows.normal_(0.0, initializer_range, generator=generator)
