"""The flags that evaluation and inference share, each defined once: model, device, windows, batches, output.

Every command that loads a model for scoring or generation builds its parser from these groups, so that a
flag has one name, one default and one help text everywhere (`--help` of each shows the same lines).
"""

from __future__ import annotations

import argparse

from colossal_lang.cli import add_boolean_flag

# Sequences per forward pass: windows for bits per byte, choices for multiple choice. The same default for
# every command; batching changes speed and memory, not the scores (tests check batched == one at a time).
DEFAULT_BATCH_SIZE = 4
DEFAULT_MAX_LENGTH = 1024


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """`--model_path` (required) and `--tokenizer_path`: the Hugging Face folders to load."""
    parser.add_argument("--model_path", required=True,
                        help="Hugging Face model folder (for a training run: its <save_dir>/final)")
    parser.add_argument("--tokenizer_path", default=None, help="tokenizer folder (default: the model's)")


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    """`--device` and `--dtype`: where the model runs and in which precision."""
    from colossal_lang.io.dtypes import DTYPE_CHOICES

    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES,
                        help="auto = bfloat16 on a CUDA device that has it, float32 otherwise (default: auto)")


def add_batch_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"sequences per forward pass (default: {DEFAULT_BATCH_SIZE})")


def add_document_flags(parser: argparse.ArgumentParser) -> None:
    """`--max_documents`, `--max_characters`: a cheap, predictable subset of each held-out file."""
    parser.add_argument("--max_documents", type=int, default=None, help="score only the first N documents of each file")
    parser.add_argument("--max_characters", type=int, default=None,
                        help="cut each document to its first N characters (bounds the cost of long documents)")


def add_window_flags(parser: argparse.ArgumentParser) -> None:
    """`--max_length`, `--stride`: the sliding window of bits per byte."""
    parser.add_argument("--max_length", type=int, default=DEFAULT_MAX_LENGTH,
                        help=f"window length in tokens (default: {DEFAULT_MAX_LENGTH})")
    parser.add_argument("--stride", type=int, default=None,
                        help="window step (default: max_length // 2); tokens past the first window see "
                             ">= max_length - stride tokens of context")


def add_fewshot_flags(parser: argparse.ArgumentParser) -> None:
    """`--fewshot_file` (also spelled `--mc_fewshot_file`, compare's older name) and `--num_fewshot`."""
    parser.add_argument("--fewshot_file", "--mc_fewshot_file", dest="fewshot_file", default=None,
                        help="multiple choice: jsonl of solved examples put before each question")
    parser.add_argument("--num_fewshot", type=int, default=None,
                        help="how many examples (default: 5 with --fewshot_file, else 0)")


def add_output_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output_json", nargs="?", const="-", default=None, metavar="PATH",
                        help="write the results as JSON to PATH (no PATH: print JSON instead of the table)")


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    """`--progress` / `--no-progress` (and the older `--no_progress`)."""
    add_boolean_flag(parser, "progress", True, "show progress bars")
