"""Train a target-language tokenizer: SentencePiece (bpe, unigram) or byte-level BPE like the base's.

    python -m colossal_lang.tokenizer.train_tokenizer --data_input_dirs data/pretrain/cs \
        --model_type byte_level_bpe --base_tokenizer_dir BASE --vocab_size 16000 --output_dir OUT

The byte-level BPE is trained with the base tokenizer's normalizer, pre-tokenizer and byte alphabet, so
its vocabulary and merges can be appended to the base (init_tokenizer) or swapped in for it.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import List, Optional, Sequence, Set

from colossal_lang.cli import add_boolean_flag, parse_args_with_config
from colossal_lang.errors import InputError, run_cli
from colossal_lang.io.atomic_folder import staged_folder
from colossal_lang.io.hf_folders import check_output_folder
from colossal_lang.io.tokenizer_files import load_base_tokenizer_json
from colossal_lang.tokenizer.corpus import load_texts, sample_sentences
from colossal_lang.tokenizer.hf_folder import save_sentencepiece_folder
from colossal_lang.tokenizer.surface import has_target_script_letter, token_text

MODEL_TYPES = ("byte_level_bpe", "bpe", "unigram")


def train_byte_level_bpe(texts: Sequence[str], base_tokenizer, vocab_size: int, min_frequency: int = 2,
                         show_progress: bool = True):
    """A `tokenizers.Tokenizer` trained on `texts` with the base's normalizer, pre-tokenizer and decoder.

    `base_tokenizer` is a `tokenizers.Tokenizer`, a transformers fast tokenizer, or a folder/tokenizer.json
    path. The base's special tokens come first, with the same strings.
    """
    from tokenizers import Tokenizer
    from tokenizers.pre_tokenizers import ByteLevel
    from tokenizers.trainers import BpeTrainer

    base = load_base_tokenizer_json(base_tokenizer)
    if base["model"].get("type") != "BPE":
        raise InputError(f"byte_level_bpe needs a BPE base tokenizer, got {base['model'].get('type')}")
    config = dict(base)
    config["added_tokens"] = []
    config["model"] = {**base["model"], "vocab": {}, "merges": []}
    tokenizer = Tokenizer.from_str(json.dumps(config))
    special_tokens = [token["content"] for token in base.get("added_tokens", []) if token.get("special")]
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special_tokens,
        initial_alphabet=ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


def keep_target_script_byte_level(tokenizer, script: Optional[str] = None):
    """Drop tokens without a target-script letter, keeping every token a kept token is merged from."""
    from tokenizers import Tokenizer

    config = json.loads(tokenizer.to_str())
    vocab = config["model"]["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in config["model"]["merges"]]
    special = {token["content"] for token in config.get("added_tokens", [])}
    merge_results = {a + b for a, b in merges}
    keep: Set[str] = {piece for piece in vocab if piece in special or piece not in merge_results}  # alphabet
    keep |= {piece for piece in vocab if has_target_script_letter(token_text(piece, "byte_level") or "", script)}
    for left, right in reversed(merges):  # parts are merged before their results: walk back to close the set
        if left + right in keep:
            keep.update((left, right))
    ordered = [piece for piece, _ in sorted(vocab.items(), key=lambda item: item[1]) if piece in keep]
    config["model"]["vocab"] = {piece: index for index, piece in enumerate(ordered)}
    config["model"]["merges"] = [[a, b] for a, b in merges if a + b in keep]
    for token in config.get("added_tokens", []):
        token["id"] = config["model"]["vocab"][token["content"]]
    return Tokenizer.from_str(json.dumps(config))


def train_sentencepiece(sentences: Sequence[str], model_type: str, vocab_size: int, character_coverage: float = 0.9995,
                        seed_sentencepiece_size: int = 200000) -> bytes:
    """A serialized SentencePiece ModelProto trained on `sentences` (LLaMA-style: byte fallback, digits split)."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            model_type=model_type,
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            byte_fallback=True,
            split_digits=True,
            allow_whitespace_only_pieces=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            max_sentence_length=16384,
            seed_sentencepiece_size=seed_sentencepiece_size,
            hard_vocab_limit=False,
            minloglevel=2,
        )
    except RuntimeError as error:  # the trainer checks its settings against the corpus: report why, on one line
        reason = re.sub(r"^INTERNAL: \S+ \[.*?\]\s*", "", str(error).strip().splitlines()[0])
        raise InputError(f"SentencePiece cannot train a {vocab_size}-piece model on this corpus: {reason}") from None
    return model.getvalue()


def keep_target_script_sentencepiece(model_bytes: bytes, script: Optional[str] = None) -> bytes:
    """Drop NORMAL pieces without a target-script letter (special, byte and single-character pieces stay)."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    kept = [piece for piece in proto.pieces
            if piece.type != piece.NORMAL or len(piece.piece) == 1 or has_target_script_letter(piece.piece, script)]
    del proto.pieces[:]
    proto.pieces.extend(kept)
    return proto.SerializeToString()


def save_trained_byte_level_folder(tokenizer, base_dir: Optional[Path], output_dir: Path) -> None:
    """tokenizer.json plus tokenizer_config with the base's special-token roles."""
    from transformers import PreTrainedTokenizerFast

    output_dir.mkdir(parents=True, exist_ok=True)
    roles = {}
    if base_dir is not None and (Path(base_dir) / "special_tokens_map.json").is_file():
        for role, value in json.loads((Path(base_dir) / "special_tokens_map.json").read_text()).items():
            if isinstance(value, (str, dict)):
                roles[role] = value if isinstance(value, str) else value.get("content")
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **roles).save_pretrained(output_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_input_dirs", required=True, help="comma-separated jsonl folders/files (or .txt)")
    parser.add_argument("--categories", default=None, help="comma-separated categories to keep (default: all)")
    parser.add_argument("--model_type", choices=MODEL_TYPES, default="byte_level_bpe")
    parser.add_argument("--base_tokenizer_dir", default=None, help="base folder (byte_level_bpe: required)")
    parser.add_argument("--vocab_size", type=int, default=16000)
    parser.add_argument("--max_sentences", type=int, default=2_000_000, help="lines sampled for training (0: all)")
    parser.add_argument("--seed", type=int, default=42)
    add_boolean_flag(parser, "target_script_only", False,
                     "keep only pieces with a non-ASCII letter (of --target_script when given)")
    parser.add_argument("--target_script", default=None, help="Unicode script name prefix, e.g. LATIN, CYRILLIC")
    parser.add_argument("--output_dir", required=True)
    return parser


def main(argv: Optional[List[str]] = None) -> Path:
    args = parse_args_with_config(build_parser(), argv)
    started = time.time()
    output_dir = Path(args.output_dir)
    check_output_folder(output_dir)
    if args.vocab_size < 1:
        raise InputError(f"--vocab_size must be positive, got {args.vocab_size}")
    if args.model_type == "byte_level_bpe" and not args.base_tokenizer_dir:
        raise InputError("--model_type byte_level_bpe needs --base_tokenizer_dir")
    categories = [c.strip() for c in args.categories.split(",")] if args.categories else None
    texts = load_texts(args.data_input_dirs, categories=categories)
    sentences = sample_sentences(texts, args.max_sentences, seed=args.seed)
    print(f"read {len(texts)} documents, training on {len(sentences)} lines")
    if args.model_type == "byte_level_bpe":
        tokenizer = train_byte_level_bpe(sentences, args.base_tokenizer_dir, args.vocab_size)
        trained_size = tokenizer.get_vocab_size()
        if args.target_script_only:
            tokenizer = keep_target_script_byte_level(tokenizer, args.target_script)
        with staged_folder(output_dir) as staging:
            save_trained_byte_level_folder(tokenizer, Path(args.base_tokenizer_dir), staging)
        final_size = tokenizer.get_vocab_size()
    else:
        from sentencepiece import sentencepiece_model_pb2 as model_pb2

        model_bytes = train_sentencepiece(sentences, args.model_type, args.vocab_size)
        trained_size = len(model_pb2.ModelProto.FromString(model_bytes).pieces)
        if args.target_script_only:
            model_bytes = keep_target_script_sentencepiece(model_bytes, args.target_script)
        with staged_folder(output_dir) as staging:
            save_sentencepiece_folder(model_bytes, None, staging)
        final_size = len(model_pb2.ModelProto.FromString(model_bytes).pieces)
    print(f"trained {trained_size} tokens; kept {final_size}, dropped {trained_size - final_size} "
          f"(target_script_only={bool(args.target_script_only)}); wrote {output_dir} in {time.time() - started:.1f}s")
    return output_dir


if __name__ == "__main__":
    run_cli(main)
