"""What pretraining and SFT preparation share: the flags, and the driver that runs parts, shards and the combine.

    list inputs → group into parts → [this shard's] parts not yet prepared: stream each (stream_part.py)
    → (unless --shard_index) combine every part into one dataset (combine.py) → summary

Peak memory is set by `--num_proc` and `--buffer_tokens`, never by the corpus. A run killed part way keeps
its finished parts in `.<output>.parts/` and the rerun prepares only the others; the output folder
appears only when complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, List, Optional

from tqdm import tqdm

from colossal_lang.cli import add_boolean_flag
from colossal_lang.data.arrow_output import check_existing_output, tokenizer_hash
from colossal_lang.data.combine import combine_parts
from colossal_lang.data.format import FORMAT, ORDER_CHOICES, PACKING_CHOICES, Manifest, read_manifest
from colossal_lang.io.jsonl import ON_ERROR_CHOICES, list_jsonl_files
from colossal_lang.data.mixing import parse_category_weights
from colossal_lang.data.parts import InputPart, part_fingerprint, plan_parts, read_part_info, shard_of
from colossal_lang.data.stream_part import RecordKind, prepare_part
from colossal_lang.data.summary import print_summary
from colossal_lang.data.tokenized_corpus import load_tokenizer
from colossal_lang.errors import InputError

PIPELINE = "streaming-v1"  # changes whenever the same settings would give other rows: part of every fingerprint
DEFAULT_BUFFER_TOKENS = 1 << 21
DEFAULT_PART_SIZE_MB = 256


def add_common_flags(parser: argparse.ArgumentParser, default_packing: str) -> None:
    """Flags shared by pretraining and SFT preparation (Colossal-LLaMA's names first)."""
    parser.add_argument("--data_input_dirs", required=True, help="comma-separated jsonl folders or files")
    parser.add_argument("--tokenizer_dir", required=True, help="Hugging Face tokenizer (or model) folder")
    parser.add_argument("--data_output_dirs", required=True, help="output folder (manifest.json + arrow/part-XXXXX)")
    parser.add_argument("--max_length", type=int, default=4096, help="tokens per training sequence")
    parser.add_argument("--num_spliced_dataset_bins", type=int, default=1,
                        help="bins per category; bucket k (arrow/part-k) holds bin k of every category")
    parser.add_argument("--packing", choices=PACKING_CHOICES + (("none",) if default_packing == "none" else ()),
                        default=default_packing,
                        help="doc_causal: attention stays inside each packed document; causal: across them")
    parser.add_argument("--category_weights", default=None,
                        help="token shares of the output, e.g. cs=0.75,en=0.25 (resampled with --seed)")
    parser.add_argument("--total_tokens", type=int, default=None,
                        help="with --category_weights: output size in tokens (default: the input's)")
    parser.add_argument("--order", choices=ORDER_CHOICES, default="shuffle",
                        help="shuffle rows, or curriculum: categories in the order of --category_weights / the inputs")
    parser.add_argument("--on_error", choices=ON_ERROR_CHOICES, default="raise", help="bad record: stop, or skip and count")
    parser.add_argument("--num_proc", type=int, default=1,
                        help="worker processes: tokenizing the input, then writing the output buckets")
    parser.add_argument("--seed", type=int, default=42)
    add_boolean_flag(parser, "overwrite", False, "replace an output folder holding another dataset")
    scale = parser.add_argument_group("corpus scale (memory, resume, many machines)")
    scale.add_argument("--buffer_tokens", type=int, default=DEFAULT_BUFFER_TOKENS,
                       help="packing window per category, in tokens (about 10 bytes each): peak memory grows with it "
                            "and with --num_proc, never with the corpus; packing fills rows as well as packing the "
                            "whole corpus at once when the window holds a few thousand rows")
    scale.add_argument("--part_size_mb", type=float, default=DEFAULT_PART_SIZE_MB,
                       help="consecutive input files are grouped into parts of at least this much jsonl: the units "
                            "a killed run resumes by and --shard_index splits")
    scale.add_argument("--num_shards", type=int, default=1, help="with --shard_index: how many shards the parts are split into")
    scale.add_argument("--shard_index", type=int, default=None,
                       help="prepare only the parts of shard K (0-based) of --num_shards, then stop; the same command "
                            "without --shard_index combines every part (preparing any missing) into the dataset")
    add_boolean_flag(scale, "keep_parts", False, "keep .<output>.parts/ after the dataset is written "
                                                 "(a later run with other weights, bins or order reuses them)")


def check_common_flags(args) -> None:
    if args.max_length < 2:
        raise InputError(f"--max_length must be at least 2 (a token and the one it predicts), got {args.max_length}")
    for name in ("num_proc", "num_spliced_dataset_bins", "num_shards"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.buffer_tokens < args.max_length:
        raise InputError(f"--buffer_tokens must be at least --max_length ({args.max_length}), got {args.buffer_tokens}")
    if args.part_size_mb <= 0:
        raise InputError(f"--part_size_mb must be positive, got {args.part_size_mb}")
    if args.shard_index is not None and not 0 <= args.shard_index < args.num_shards:
        raise InputError(f"--shard_index must be in 0..{args.num_shards - 1} (--num_shards {args.num_shards}), got {args.shard_index}")


def category_order_of(weights: Dict[str, float], categories_in_file_order: List[str]) -> List[str]:
    """The weights' order when given, else the order categories first appear in (sorted) input files."""
    seen = list(dict.fromkeys(categories_in_file_order))
    return list(weights) + [c for c in seen if c not in weights] if weights else seen


def work_folder(output_dir: Path) -> Path:
    """Where parts wait for the combine: a hidden sibling of the output (on the same, shared, file system)."""
    return output_dir.parent / f".{output_dir.name}.parts"


def _sha256(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def run_preparation(args, command: str, make_kind: Callable, manifest_extras: Callable[[], Dict]) -> Dict:
    """Prepare `args.data_input_dirs` (all parts, or those of `--shard_index`) and combine them; returns the manifest
    (for a shard run: what it prepared). `make_kind(tokenizer)` gives the `RecordKind` of the command,
    `manifest_extras()` (called after it) the manifest fields of that kind."""
    started = time.time()
    check_common_flags(args)
    weights = parse_category_weights(args.category_weights)
    tokenizer = load_tokenizer(args.tokenizer_dir)
    kind: RecordKind = make_kind(tokenizer)
    output_dir = Path(args.data_output_dirs)
    parts = plan_parts(list_jsonl_files(args.data_input_dirs), int(args.part_size_mb * 1e6))
    if args.shard_index is not None:
        shards = shard_of(parts, args.num_shards)
        parts = [part for part, shard in zip(parts, shards) if shard == args.shard_index]
    tokenizer_sha256 = tokenizer_hash(args.tokenizer_dir)
    part_settings = {"pipeline": PIPELINE, "format": FORMAT, "kind": kind.name, "tokenizer": tokenizer_sha256,
                     "max_length": args.max_length, "buffer_tokens": args.buffer_tokens, "on_error": args.on_error,
                     "pack": kind.pack, **kind.settings}
    fingerprints = [part_fingerprint(part, part_settings) for part in parts]
    mix = {name: getattr(args, name) for name in ("num_spliced_dataset_bins", "packing", "category_weights",
                                                   "total_tokens", "order", "seed")}
    fingerprint = _sha256({"parts": [f for f, _ in fingerprints], "mix": mix, "settings": part_settings})
    if args.shard_index is None and check_existing_output(output_dir, fingerprint, args.overwrite):
        print(f"{output_dir} already holds this dataset (same inputs, tokenizer and settings): nothing to do")
        return read_manifest(output_dir).to_dict()

    work = work_folder(output_dir)
    infos, reused = prepare_missing_parts(parts, fingerprints, work, kind, args)
    if args.shard_index is not None:
        print(f"{command}: shard {args.shard_index} of {args.num_shards}: {len(parts)} part(s) in {work}, "
              f"{reused} already prepared; run the command without --shard_index once every shard is done")
        return {"shard_index": args.shard_index, "num_shards": args.num_shards, "parts": [p.name for p in parts],
                "reused_parts": reused}
    kept = sum(info["records_kept"] for info in infos)
    if kept == 0:
        skipped = sum((Counter(info["skipped"]) for info in infos), Counter())
        raise InputError(f"no valid records in {sum(len(p.files) for p in parts)} file(s); skipped: {dict(skipped)}",
                         parts[0].files[0])
    order = category_order_of(weights, [entry["name"] for info in infos for entry in info["categories"]])
    fields = dict(kind=kind.name, max_length=args.max_length, packing=args.packing, num_buckets=args.num_spliced_dataset_bins,
                  category_weights=weights or None, order=args.order, seed=args.seed, tokenizer_hash=tokenizer_sha256,
                  tokenizer_dir=str(args.tokenizer_dir), fingerprint=fingerprint, buffer_tokens=args.buffer_tokens,
                  num_parts=len(parts))
    manifest = Manifest(**{**fields, **manifest_extras()})
    manifest = combine_parts(output_dir, infos, [work / part.name for part in parts], manifest, order, weights,
                             args.total_tokens, args.num_proc)
    if not args.keep_parts:
        shutil.rmtree(work, ignore_errors=True)
    print_summary(command, manifest.to_dict(), output_dir, time.time() - started, reused_parts=reused)
    return manifest.to_dict()


def prepare_missing_parts(parts: List[InputPart], fingerprints, work: Path, kind: RecordKind, args):
    """part.json of every part, preparing those not already in `work`; and how many were already there."""
    infos: List[Optional[dict]] = [read_part_info(work / part.name, fingerprint) for part, (fingerprint, _) in zip(parts, fingerprints)]
    reused = sum(info is not None for info in infos)
    todo_lines = sum(lines for info, (_, lines) in zip(infos, fingerprints) if info is None)
    with tqdm(total=todo_lines, desc=kind.desc, unit="doc", mininterval=1.0) as progress:
        for index, (part, (fingerprint, _)) in enumerate(zip(parts, fingerprints)):
            if infos[index] is None:
                infos[index] = prepare_part(part, kind, work / part.name, fingerprint, args.max_length,
                                            args.buffer_tokens, args.num_proc, args.on_error, progress)
    return infos, reused
