"""Grow a causal LM to an expanded (or swapped) tokenizer and initialise the new embedding and head rows.

    python -m colossal_lang.model.init_model \\
        --source_model_and_tokenizer_path S --target_tokenizer_path T --target_model_path O \\
        [--init mean_of_pieces|mean|random|align|distill] [--piece_weight 0.8] [--pad_to_multiple_of 64] [--dtype bfloat16]
        [--distill_text data/pretrain/cs] [--distill_reference_text data/pretrain/en] [--distill_steps 8] ...

Rows of tokens the source already had are copied bit for bit, so the model's distribution over the old
vocabulary on old-language text is unchanged except for the mass new rows take. Input embeddings and the
output head are initialised separately (head rows from the head); a tied model stays tied. With
mean_of_pieces, head rows (the one shared row of a tied model) are pulled toward the mean head row,
mean + piece_weight * (mean of pieces - mean), so new tokens take less probability on old-language text;
an untied model's input rows stay the plain mean of their pieces. Padding rows
(up to a multiple of `--pad_to_multiple_of`) get the mean row of their matrix: by Jensen's inequality,
exp(h . mean(w)) <= mean(exp(h . w)), so each padding id gets at most 1/V of the old vocabulary's mass in
every context, in practice far less (see docs/model_init.md), for tied and untied models alike and with
no bias term (Llama has none). `--init distill` starts from mean_of_pieces and then fits the new rows
on contexts from `--distill_text` (colossal_lang.model.distill_rows).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from colossal_lang.cli import parse_args_with_config
from colossal_lang.model.distill_rows import DistillReport, DistillSettings, distill_new_rows, iter_texts
from colossal_lang.errors import InputError, run_cli
from colossal_lang.io.atomic_folder import staged_folder
from colossal_lang.io.dtypes import TORCH_DTYPES as DTYPES
from colossal_lang.io.hf_folders import check_model_folder, check_output_folder
from colossal_lang.io.models import load_causal_lm
from colossal_lang.io.tokenizer_files import load_hf_tokenizer
from colossal_lang.model.new_token_rows import (
    INIT_METHODS,
    PIECE_WEIGHT,
    check_piece_weight,
    initialize_new_rows,
    load_alignment,
    map_vocabularies,
    mean_of_rows,
    pieces_of_new_tokens,
)

INIT_CHOICES = tuple(INIT_METHODS) + ("distill",)


@dataclass
class ExpansionReport:
    """What `expand_model` did, for the command's summary and for tests."""

    source_rows: int
    source_vocab_size: int
    target_vocab_size: int
    new_rows: int  # target_vocab_size rounded up to the padding multiple
    kept_tokens: int
    new_token_ids: torch.Tensor
    padding_ids: torch.Tensor
    init: str
    tied: bool
    piece_weight: float = 1.0  # applied to mean_of_pieces head rows (the shared rows when tied)
    pieces_left_out: int = 0
    tokens_without_pieces: int = 0
    distill: Optional[DistillReport] = None  # --init distill: what was fitted, what kept mean_of_pieces


def round_up(size: int, multiple: Optional[int]) -> int:
    if not multiple or multiple <= 1:
        return size
    return -(-size // multiple) * multiple


def copy_rows(destination: torch.Tensor, destination_ids: torch.Tensor, source: torch.Tensor, source_ids: torch.Tensor, chunk: int = 1 << 15):
    """destination[destination_ids] = source[source_ids], in chunks so no full-size temporary copy is made."""
    count = len(destination_ids)
    if count and torch.equal(destination_ids, source_ids) and int(destination_ids[-1]) == count - 1:
        destination[:count].copy_(source[:count])  # expansion keeps ids: one contiguous copy
        return
    for start in range(0, count, chunk):
        ids = slice(start, start + chunk)
        destination[destination_ids[ids]] = source.index_select(0, source_ids[ids]).to(destination.dtype)


def grow_matrix(weight: torch.Tensor, vocab_map, new_rows: torch.Tensor, pad_row: torch.Tensor, total_rows: int,
                keep_source_padding: bool = False) -> torch.Tensor:
    """The new (total_rows x hidden) matrix: kept rows copied, new rows set, padding rows = `pad_row`.

    `keep_source_padding` (expansion): the checkpoint's own padding rows that are still padding (ids from
    the target vocabulary's end to the checkpoint's) are copied as they are, not reset.
    """
    grown = torch.empty(total_rows, weight.shape[1], dtype=weight.dtype)
    copy_rows(grown, vocab_map.kept_target_ids, weight, vocab_map.kept_source_ids)
    grown[vocab_map.new_token_ids] = new_rows.to(weight.dtype)
    grown[vocab_map.target_size :] = pad_row.to(weight.dtype)
    kept_padding_end = min(weight.shape[0], total_rows)
    if keep_source_padding and kept_padding_end > vocab_map.target_size:
        grown[vocab_map.target_size : kept_padding_end] = weight[vocab_map.target_size : kept_padding_end]
    return grown


def check_source_rows(model, source_tokenizer) -> None:
    """The checkpoint must have a row for every token of its tokenizer, and head and embeddings the same rows."""
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    source_rows, source_vocab = embeddings.weight.shape[0], len(source_tokenizer)
    if source_rows < source_vocab:
        raise InputError(f"model has {source_rows} embedding rows but its tokenizer has {source_vocab} tokens")
    if head is not None and head.weight.shape[0] != source_rows:
        raise InputError(f"output head has {head.weight.shape[0]} rows but the input embeddings have {source_rows}")


def expand_model(
    model,
    source_tokenizer,
    target_tokenizer,
    init: str = "mean_of_pieces",
    pad_to_multiple_of: Optional[int] = 64,
    alignment: Optional[dict] = None,
    seed: int = 0,
    progress: bool = True,
    piece_weight: float = PIECE_WEIGHT,
) -> ExpansionReport:
    """Resize `model` in place to `target_tokenizer` (padded) and initialise every new row.

    With `mean_of_pieces`, new head rows are mean + piece_weight * (mean of pieces - mean) of the head; in
    a tied model that is also the input row, in an untied one the input rows keep the plain mean of pieces.

    Raises InputError when the checkpoint has fewer rows than its tokenizer, when the head and the
    embeddings disagree in size, when the target is not an expansion (without `alignment`), when
    the alignment names rows the source does not have, or when piece_weight is outside [0, 1].
    """
    if init not in INIT_METHODS:
        raise InputError(f"unknown init method {init!r}; choose one of {', '.join(INIT_METHODS)}")
    check_piece_weight(piece_weight)
    if init == "align" and alignment is None:
        raise InputError("--init align needs the alignment map (token_alignment.json)")
    check_source_rows(model, source_tokenizer)
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is None or head.weight is embeddings.weight
    source_rows, source_vocab = embeddings.weight.shape[0], len(source_tokenizer)

    vocab_map = map_vocabularies(source_tokenizer, target_tokenizer, alignment if init == "align" else None)
    out_of_range = (vocab_map.kept_source_ids < 0) | (vocab_map.kept_source_ids >= source_rows)
    if out_of_range.any():
        bad_row = int(vocab_map.kept_source_ids[out_of_range][0])
        raise InputError(f"token_alignment.json copies source row {bad_row}; the model has rows 0..{source_rows - 1}")
    total_rows = round_up(vocab_map.target_size, pad_to_multiple_of)
    expansion = init != "align"
    if expansion:  # a checkpoint padded past its tokenizer (Qwen: 151,936 rows, 151,669 ids) never loses rows
        total_rows = max(total_rows, source_rows)
    num_new = len(vocab_map.new_token_ids)
    pieces = None
    if init in ("mean_of_pieces", "align") and num_new:
        pieces = pieces_of_new_tokens(source_tokenizer, target_tokenizer, vocab_map.new_token_ids, source_rows, progress)

    generator = torch.Generator().manual_seed(seed)
    initializer_range = getattr(model.config, "initializer_range", 0.02)
    # (matrix, weight toward the pieces): the head's rows decide how much probability new tokens take.
    matrices = [(embeddings, piece_weight)] if tied else [(embeddings, 1.0), (head, piece_weight)]
    for module, weight_of_pieces in matrices:
        with torch.no_grad():
            weight = module.weight.data
            new_rows = initialize_new_rows(
                weight, init, num_new, source_vocab, pieces, initializer_range, generator, weight_of_pieces
            )
            grown = grow_matrix(weight, vocab_map, new_rows, mean_of_rows(weight, source_vocab), total_rows, expansion)
            del weight, new_rows
        # Replacing the parameter (rather than resize_token_embeddings) frees the old matrix at once and
        # skips transformers' own initialisation of rows we are about to overwrite.
        module.weight = torch.nn.Parameter(grown, requires_grad=module.weight.requires_grad)
        if hasattr(module, "num_embeddings"):
            module.num_embeddings = total_rows
        if hasattr(module, "out_features"):
            module.out_features = total_rows
    model.config.vocab_size = total_rows
    if tied and head is not None:
        model.tie_weights()

    return ExpansionReport(
        source_rows=source_rows,
        source_vocab_size=source_vocab,
        target_vocab_size=vocab_map.target_size,
        new_rows=total_rows,
        kept_tokens=len(vocab_map.kept_target_ids),
        new_token_ids=vocab_map.new_token_ids,
        padding_ids=torch.arange(vocab_map.target_size, total_rows),
        init=init,
        tied=tied,
        piece_weight=piece_weight if init == "mean_of_pieces" else 1.0,
        pieces_left_out=pieces.num_left_out if pieces else 0,
        tokens_without_pieces=pieces.num_without_pieces if pieces else 0,
    )


def load_source(source_path: Path, dtype: Optional[torch.dtype]):
    check_model_folder(source_path)  # before the tokenizer: a folder without config.json is named as such
    tokenizer = load_hf_tokenizer(source_path, "source tokenizer")
    model = load_causal_lm(source_path, dtype or "auto", what="the source model")
    return model.eval(), tokenizer


def init_model(
    source_model_and_tokenizer_path,
    target_tokenizer_path,
    target_model_path,
    init: str = "mean_of_pieces",
    pad_to_multiple_of: Optional[int] = 64,
    dtype: Optional[str] = None,
    seed: int = 0,
    progress: bool = True,
    piece_weight: float = PIECE_WEIGHT,
    distill_text=None,
    distill_reference_text=None,
    distill_settings: Optional[DistillSettings] = None,
) -> ExpansionReport:
    """Load the source, expand it to the target tokenizer and save model + tokenizer to `target_model_path`.

    With init="distill", `distill_text` (paths: jsonl files/folders, .txt files) gives the contexts and
    `distill_reference_text` (optional, the old language) the positions whose predictions are protected.
    """
    source_path, target_tokenizer_path, output_path = map(Path, (source_model_and_tokenizer_path, target_tokenizer_path, target_model_path))
    if not source_path.is_dir():
        raise InputError("source model folder not found", source_path)
    if not target_tokenizer_path.is_dir():
        raise InputError("target tokenizer folder not found", target_tokenizer_path)
    if output_path.resolve() in (source_path.resolve(), target_tokenizer_path.resolve()):
        raise InputError("the output folder must differ from the source model and target tokenizer folders", output_path)
    check_output_folder(output_path)
    if dtype is not None and dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    check_piece_weight(piece_weight)
    if init == "distill" and not distill_text:
        raise InputError("--init distill needs --distill_text (target-language jsonl/text the new tokens occur in)")
    for text_path in (as_paths(distill_text) + as_paths(distill_reference_text)) if init == "distill" else []:
        if not Path(text_path).exists():  # before the model is loaded: a typo costs nothing
            raise InputError("distillation text not found", text_path)
    target_tokenizer = load_hf_tokenizer(target_tokenizer_path, "target tokenizer")
    alignment = load_alignment(target_tokenizer_path) if init == "align" else None

    model, source_tokenizer = load_source(source_path, DTYPES.get(dtype))
    try:
        check_source_rows(model, source_tokenizer)
    except InputError as error:
        raise InputError(error.problem, source_path) from None
    try:
        report = expand_model(
            model, source_tokenizer, target_tokenizer, "mean_of_pieces" if init == "distill" else init,
            pad_to_multiple_of, alignment, seed, progress, piece_weight,
        )
    except InputError as error:
        if error.path is None:  # the source was checked above: what is left is about the target tokenizer
            raise InputError(error.problem, target_tokenizer_path) from None
        raise

    if init == "distill":
        report.init = "distill"
        report.distill = distill_new_rows(
            model, source_tokenizer, target_tokenizer, report.new_token_ids, iter_texts(as_paths(distill_text)),
            distill_settings, iter_texts(as_paths(distill_reference_text)) if distill_reference_text else None, progress,
        )
    # Written beside the destination and renamed into place: an interrupted run leaves no half-written model.
    with staged_folder(output_path) as staging:
        model.save_pretrained(staging)
        target_tokenizer.save_pretrained(staging)
    return report


def as_paths(paths) -> list:
    """A comma-separated string or a list of paths, as a list."""
    if not paths:
        return []
    if isinstance(paths, (str, Path)):
        return [part.strip() for part in str(paths).split(",") if part.strip()]
    return list(paths)


def describe_fit(distilled: DistillReport) -> str:
    settings = distilled.settings
    if distilled.tied:
        return f"tied: one row fits the input side, its logits held by --distill_keep_logits_weight {settings.keep_logits_weight:g}" + (
            f" and the output side weighted {settings.output_weight:g}" if settings.output_weight else "")
    if settings.output_weight:
        return f"input rows on the input side, head rows on the output side (weight {settings.output_weight:g})"
    return "input rows fitted, head rows kept at mean_of_pieces (--distill_output_weight 0)"


def describe_distillation(distilled: DistillReport) -> str:
    settings = distilled.settings
    return (
        f"distilled {distilled.distilled} new tokens on {distilled.contexts} contexts from {distilled.corpus_tokens} tokens of text "
        f"({settings.steps} steps, {settings.prefix_tokens}-token prefixes, {settings.following_tokens} following tokens, "
        f"{distilled.reference_positions} reference positions; {describe_fit(distilled)}); "
        f"kept mean_of_pieces: {distilled.without_context} with no context, {distilled.over_budget} over --distill_max_tokens; "
        f"hidden-state error {distilled.input_error_before:.3f} -> {distilled.input_error_after:.3f}, "
        f"logit error {distilled.output_error_before:.2f} -> {distilled.output_error_after:.2f} nats; {distilled.seconds:.0f} s"
    )


def describe(report: ExpansionReport, dtype: torch.dtype, output_path, seconds: float) -> str:
    pulled = "" if report.piece_weight == 1.0 else (
        f", then mean row + {report.piece_weight:g} x (that - mean row)" + ("" if report.tied else " for the head rows")
    )
    how = {
        "mean_of_pieces": "mean of their source-tokenizer pieces (dummy prefix, byte and special pieces left out when others exist)" + pulled,
        "mean": "the mean source row",
        "random": "N(0, initializer_range), the model's own initialiser",
        "align": "rows copied through token_alignment.json; the rest from the mean of their pieces",
        "distill": "mean of their source-tokenizer pieces" + pulled + ", then distilled",
    }[report.init]
    lines = [
        f"source: {report.source_vocab_size} tokens in {report.source_rows} rows; target: {report.target_vocab_size} tokens",
        f"kept {report.kept_tokens} rows (copied unchanged); {len(report.new_token_ids)} new tokens initialised with {how}",
    ]
    if report.distill is not None:
        lines.append(describe_distillation(report.distill))
    if report.init in ("mean_of_pieces", "align", "distill"):
        lines.append(f"pieces left out: {report.pieces_left_out}; tokens with no pieces (given the mean row): {report.tokens_without_pieces}")
    lines += [
        f"padding rows: {len(report.padding_ids)} (ids {report.target_vocab_size}..{report.new_rows - 1}), set to the mean row"
        + (f" (those the checkpoint already had, below {report.source_rows}, kept as they were)"
           if report.init != "align" and report.source_rows > report.target_vocab_size else ""),
        f"embedding rows: {report.new_rows}; head: {'tied to the embeddings' if report.tied else 'separate, initialised from the head'}; dtype: {str(dtype).replace('torch.', '')}",
        f"wrote model and tokenizer to {output_path} in {seconds:.1f} s",
    ]
    return "\n".join(lines)


def main(argv=None) -> ExpansionReport:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source_model_and_tokenizer_path", required=True, help="Hugging Face folder: model and its tokenizer")
    parser.add_argument("--target_tokenizer_path", required=True, help="expanded (or swapped) tokenizer folder")
    parser.add_argument("--target_model_path", required=True, help="where the grown model and the tokenizer are written")
    parser.add_argument("--init", default="mean_of_pieces", choices=INIT_CHOICES, help="how new rows start (default: mean_of_pieces)")
    parser.add_argument(
        "--piece_weight", type=float, default=PIECE_WEIGHT,
        help=f"mean_of_pieces: new head rows (shared rows when tied) = mean + w * (mean of pieces - mean); "
        f"1 is the plain mean of the pieces (default: {PIECE_WEIGHT})",
    )
    parser.add_argument("--pad_to_multiple_of", type=int, default=64, help="round the vocabulary up to this multiple (0: no padding)")
    parser.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="dtype of the saved model (default: the source's)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --init random")
    defaults = DistillSettings()
    parser.add_argument("--distill_text", default=None, help="--init distill: target-language jsonl files/folders or .txt files, comma-separated")
    parser.add_argument("--distill_reference_text", default=None, help="--init distill: old-language text whose predictions new tokens must not take (optional)")
    parser.add_argument("--distill_steps", type=int, default=defaults.steps, help=f"Adam steps per batch of tokens (default: {defaults.steps})")
    parser.add_argument("--distill_lr", type=float, default=defaults.lr, help=f"(default: {defaults.lr})")
    parser.add_argument("--distill_contexts", type=int, default=defaults.contexts_per_token, help=f"contexts per token (default: {defaults.contexts_per_token})")
    parser.add_argument("--distill_batch_tokens", type=int, default=defaults.batch_tokens, help=f"tokens fitted together (default: {defaults.batch_tokens})")
    parser.add_argument("--distill_max_tokens", type=int, default=None, help="distil only the most frequent new tokens in the text (default: all)")
    parser.add_argument("--distill_max_corpus_tokens", type=int, default=defaults.max_corpus_tokens, help=f"tokens of text read (default: {defaults.max_corpus_tokens})")
    parser.add_argument("--distill_output_weight", type=float, default=defaults.output_weight,
                        help=f"weight of the output side (new token's logit = log p of its spelling); 0 leaves head rows at mean_of_pieces (default: {defaults.output_weight})")
    parser.add_argument("--distill_keep_logits_weight", type=float, default=defaults.keep_logits_weight,
                        help=f"tied models: weight keeping the row's logits where mean_of_pieces put them (default: {defaults.keep_logits_weight})")
    args = parse_args_with_config(parser, argv)
    settings = DistillSettings(
        steps=args.distill_steps, lr=args.distill_lr, contexts_per_token=args.distill_contexts, batch_tokens=args.distill_batch_tokens,
        max_tokens=args.distill_max_tokens, max_corpus_tokens=args.distill_max_corpus_tokens,
        output_weight=args.distill_output_weight, keep_logits_weight=args.distill_keep_logits_weight,
    )
    started = time.perf_counter()
    report = init_model(
        args.source_model_and_tokenizer_path, args.target_tokenizer_path, args.target_model_path,
        args.init, args.pad_to_multiple_of, args.dtype, args.seed, piece_weight=args.piece_weight,
        distill_text=args.distill_text, distill_reference_text=args.distill_reference_text, distill_settings=settings,
    )
    from transformers import AutoConfig

    saved_dtype = AutoConfig.from_pretrained(args.target_model_path).torch_dtype
    print(describe(report, saved_dtype, args.target_model_path, time.perf_counter() - started))
    return report


if __name__ == "__main__":
    run_cli(main)
