"""Expand a base tokenizer with target-language pieces, or swap its vocabulary for the target's.

    python -m colossal_lang.tokenizer.init_tokenizer --source_tokenizer_dir BASE --target_tokenizer_dir OUT \
        --expand_from_tokenizer TRAINED [--reference_text data/pretrain/en] [--no_protect] [--eval_text F.jsonl]
    python -m colossal_lang.tokenizer.init_tokenizer ... --expand_tokens_file pieces.jsonl   # {"piece": ...}
    python -m colossal_lang.tokenizer.init_tokenizer ... --expand_from_tokenizer TRAINED --swap

Pieces in --expand_tokens_file are text; a leading space or `▁` marks the start of a word.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import List, Optional

from colossal_lang.cli import add_boolean_flag, parse_args_with_config
from colossal_lang.errors import InputError, run_cli
from colossal_lang.io.atomic_folder import staged_folder
from colossal_lang.io.hf_folders import check_output_folder
from colossal_lang.io.jsonl import iter_jsonl
from colossal_lang.io.tokenizer_files import find_sentencepiece_model, load_base_tokenizer_json, read_sentencepiece_model
from colossal_lang.tokenizer import expand_byte_level as byte_level
from colossal_lang.tokenizer import expand_sentencepiece as sentencepiece
from colossal_lang.tokenizer.corpus import load_texts
from colossal_lang.tokenizer.expansion import ExpansionPlan, protect
from colossal_lang.tokenizer.family import tokenizer_family
from colossal_lang.tokenizer.hf_folder import check_slow_and_fast_agree, save_byte_level_folder, save_sentencepiece_folder
from colossal_lang.tokenizer.surface import (SPM_SPACE, byte_level_to_bytes, bytes_to_byte_level,
                                             has_target_script_letter, spm_piece_to_bytes)


# Checked when no reference or eval text is given: a word at the very start (the dummy prefix), spaces, digits.
AGREEMENT_TEXTS = ["Gentlemen, the state of the union is strong.", "  two  spaces\nand 12345 digits", "Příliš žluťoučký kůň"]


def read_expand_tokens_file(path: Path) -> List[str]:
    """The `piece` strings of a Colossal-LLaMA style jsonl file, as text (`▁` read as a space)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("expand tokens file not found", path)
    pieces = []
    for line_number, record in iter_jsonl(path):
        piece = record.get("piece")
        if not isinstance(piece, str) or not piece:
            raise InputError("expected a non-empty string field 'piece'", path, line_number)
        pieces.append(piece.replace(SPM_SPACE, " "))
    return pieces


def pieces_as_bytes_from_tokenizer(folder: Path) -> List[bytes]:
    """The trained tokenizer's non-special pieces, in id order, as the bytes they stand for."""
    family = tokenizer_family(folder)
    if family == "spm":
        proto = read_sentencepiece_model(find_sentencepiece_model(folder))
        return [spm_piece_to_bytes(piece) for piece in sentencepiece.pieces_from_model_proto(proto)]
    config = load_base_tokenizer_json(folder)
    to_bytes = byte_level_to_bytes if family == "byte_level" else spm_piece_to_bytes
    return [to_bytes(token) for token in byte_level.pieces_from_tokenizer_json(config)]


def to_base_notation(pieces: List[bytes], family: str, plan_rejects: dict) -> List[str]:
    """Byte strings written the way the base writes tokens: byte-level characters or `▁` pieces."""
    converted = []
    for data in pieces:
        if data is None:
            continue
        if family == "byte_level":
            converted.append(bytes_to_byte_level(data))
            continue
        try:
            converted.append(data.decode("utf-8").replace(" ", SPM_SPACE))
        except UnicodeDecodeError:
            plan_rejects[repr(data)] = "partial UTF-8 sequence (SentencePiece pieces are characters)"
    return converted


def expand(source_dir: Path, pieces_bytes: List[bytes], reference_texts: Optional[List[str]],
           target_script_only: bool = False, target_script: Optional[str] = None):
    """Plan an expansion (protected when reference texts are given): returns (family, base, plan, expanded)."""
    family = tokenizer_family(source_dir)
    early_rejects: dict = {}
    if target_script_only:
        kept = []
        for data in pieces_bytes:
            text = data.decode("utf-8", errors="replace") if data is not None else ""
            if has_target_script_letter(text, target_script):
                kept.append(data)
            else:
                early_rejects[repr(text)] = "no target-script letter (--target_script_only)"
        pieces_bytes = kept
    pieces = to_base_notation(pieces_bytes, family, early_rejects)
    if family in ("byte_level", "metaspace"):
        base = load_base_tokenizer_json(source_dir)
        add_chars = family == "metaspace"
        plan_for = lambda blocked: byte_level.plan_byte_level_expansion(base, pieces, blocked, add_chars)  # noqa: E731
        fired = lambda plan: byte_level.fired_new_tokens(  # noqa: E731
            byte_level.build_tokenizer(byte_level.apply_byte_level_plan(base, plan)), plan, reference_texts)
        apply = byte_level.apply_byte_level_plan
    else:
        base = read_sentencepiece_model(find_sentencepiece_model(source_dir))
        plan_for = lambda blocked: sentencepiece.plan_sentencepiece_expansion(base, pieces, blocked)  # noqa: E731
        fired = lambda plan: sentencepiece.fired_new_pieces(base, plan, reference_texts)  # noqa: E731
        apply = sentencepiece.apply_sentencepiece_plan
    plan: ExpansionPlan = protect(plan_for, fired) if reference_texts else plan_for(set())
    plan.rejected.update(early_rejects)
    expanded = apply(base, plan)
    if family != "spm":  # a SentencePiece model keeps ids by construction (pieces are appended to a list)
        try:
            byte_level.check_ids_kept(base, expanded, plan.first_new_id)
        except ValueError as error:
            raise InputError(f"refusing to write an expansion that renumbers the base: {error}", source_dir) from None
    return family, base, plan, expanded


def chars_per_token(encode, texts: List[str]) -> float:
    return sum(map(len, texts)) / max(1, sum(len(encode(text)) for text in texts))


def _encoder(family: str, model):
    if family != "spm":
        tokenizer = byte_level.build_tokenizer(model)
        return lambda text: tokenizer.encode(text, add_special_tokens=False).ids
    processor = sentencepiece.processor_for(model)
    return processor.encode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source_tokenizer_dir", required=True, help="base tokenizer folder (or a .model file)")
    parser.add_argument("--target_tokenizer_dir", required=True, help="output folder")
    parser.add_argument("--expand_tokens_file", default=None, help='jsonl of {"piece": ...} lines')
    parser.add_argument("--expand_from_tokenizer", default=None, help="a trained target tokenizer folder or .model")
    parser.add_argument("--reference_text", default="data/pretrain/en",
                        help="original-language jsonl/.txt whose tokenization must not change")
    add_boolean_flag(parser, "protect", True,
                     "drop pieces that change the reference text's tokenization (--no_protect keeps them)")
    parser.add_argument("--eval_text", default=None, help="target-language jsonl to report compression on")
    add_boolean_flag(parser, "target_script_only", False, "keep only pieces with a letter of the target script")
    parser.add_argument("--target_script", default=None, help="Unicode script name prefix, e.g. LATIN, CYRILLIC")
    add_boolean_flag(parser, "swap", False, "replace the vocabulary and write token_alignment.json")
    parser.add_argument("--bilingual_dictionary", default=None, help="tsv target<TAB>source, for --swap")
    return parser


def main(argv: Optional[List[str]] = None):
    args = parse_args_with_config(build_parser(), argv)
    started = time.time()
    source_dir, output_dir = Path(args.source_tokenizer_dir), Path(args.target_tokenizer_dir)
    source_family = tokenizer_family(source_dir)
    inputs = [source_dir] + ([Path(args.expand_from_tokenizer)] if args.expand_from_tokenizer else [])
    if output_dir.resolve() in {path.resolve() for path in inputs}:
        raise InputError("the output folder must differ from the source and trained tokenizer folders", output_dir)
    check_output_folder(output_dir)
    if args.swap:
        from colossal_lang.tokenizer.swap import swap_vocabulary

        if not args.expand_from_tokenizer:
            raise InputError("--swap needs --expand_from_tokenizer (the tokenizer to swap in)")
        with staged_folder(output_dir) as staging:
            counts = swap_vocabulary(source_dir, Path(args.expand_from_tokenizer), staging, source_family,
                                     tokenizer_family(args.expand_from_tokenizer),
                                     Path(args.bilingual_dictionary) if args.bilingual_dictionary else None)
        print(f"swapped in {counts['target_vocab']} tokens: {counts['exact_matches']} matched by surface form, "
              f"{counts['dictionary_matches']} by the dictionary, {counts['unmatched']} new; "
              f"wrote {output_dir}/token_alignment.json in {time.time() - started:.1f}s")
        return counts
    if bool(args.expand_tokens_file) == bool(args.expand_from_tokenizer):
        raise InputError("give exactly one of --expand_tokens_file and --expand_from_tokenizer")
    if args.expand_tokens_file:
        pieces_bytes = [piece.encode("utf-8") for piece in read_expand_tokens_file(args.expand_tokens_file)]
    else:
        pieces_bytes = pieces_as_bytes_from_tokenizer(Path(args.expand_from_tokenizer))
    reference = load_texts(args.reference_text) if args.protect else None
    eval_texts = load_texts(args.eval_text) if args.eval_text else None  # read before any output is written
    family, base, plan, expanded = expand(source_dir, pieces_bytes, reference,
                                          args.target_script_only, args.target_script)
    base_dir = source_dir if source_dir.is_dir() else None
    with staged_folder(output_dir) as staging:
        if family != "spm":
            save_byte_level_folder(expanded, base_dir, staging)
        else:
            save_sentencepiece_folder(expanded.SerializeToString(), base_dir, staging)
            checked = check_slow_and_fast_agree(staging, (reference or []) + (eval_texts or []) or AGREEMENT_TEXTS)
            print(f"tokenizer.model and tokenizer.json give the same ids on {checked} texts")
    print(plan.summary())
    if eval_texts:
        report_compression(args, eval_texts, source_dir, pieces_bytes, family, base, expanded, plan)
    print(f"wrote {output_dir} ({plan.first_new_id} -> {plan.first_new_id + len(plan.new_tokens)} tokens) "
          f"in {time.time() - started:.1f}s")
    return plan


def report_compression(args, texts, source_dir, pieces_bytes, family, base, expanded, plan) -> None:
    """Characters per token on --eval_text: base, this expansion and (when protected) the unprotected one."""
    base_cpt = chars_per_token(_encoder(family, base), texts)
    this_cpt = chars_per_token(_encoder(family, expanded), texts)
    line = f"chars/token on {args.eval_text}: base {base_cpt:.3f}, expanded {this_cpt:.3f} ({this_cpt / base_cpt:.2f}x)"
    if plan.protection_rounds:
        _, _, _, unprotected = expand(source_dir, pieces_bytes, None, args.target_script_only, args.target_script)
        free_cpt = chars_per_token(_encoder(family, unprotected), texts)
        line += f"; without protection {free_cpt:.3f}: protection costs {100 * (1 - this_cpt / free_cpt):.1f}%"
    print(line)


if __name__ == "__main__":
    run_cli(main)
