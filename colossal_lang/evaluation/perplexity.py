"""Bits per byte and token perplexity of a causal LM on plain text, comparable across tokenizers.

Bits per byte = (total negative log-likelihood in nats) / (ln 2 * total UTF-8 bytes of the texts).
Token perplexity = exp(nll / tokens) depends on the tokenizer; bits per byte does not, which is what
makes a base model and its vocabulary-expanded adaptation comparable on the same text.

Conventions (the same for every tokenizer, so numbers line up):

* Document start. Every text token is scored, the first one included. If the tokenizer adds special
  tokens in front of text by itself (LLaMA/Mistral's `<s>`), the first text token is predicted from
  them. Otherwise (SmolLM2, GPT-2 style tokenizers) the eos token is prepended as context: it is what
  separates documents in packed pretraining, so the model sees "a new document starts here". Tokens
  the tokenizer appends (a trailing eos) are not scored: they have no bytes.
* Long documents: a sliding window of `max_length` tokens that moves by `stride`. Each token is scored
  exactly once, in the first window that reaches it; every token past the first window is predicted
  from at least `max_length - stride` tokens of context (tokens in the first window see everything
  before them). `stride` must be smaller than `max_length`; `stride = max_length // 2` is the default
  trade-off (the default when no stride is given); smaller strides cost more forward passes for more
  context.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from dataclasses import asdict, dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import torch

from colossal_lang.errors import InputError, run_cli


@dataclass
class PerplexityResult:
    """Totals over a set of texts; `bits_per_byte` is the number to compare across models and tokenizers."""

    bits_per_byte: float
    token_perplexity: float
    nll_nats: float
    num_bytes: int
    num_characters: int
    num_tokens: int
    num_documents: int
    num_windows: int
    characters_per_token: float
    max_length: int
    stride: int
    context_tokens: Tuple[str, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def document_prefix_ids(tokenizer) -> List[int]:
    """Token ids put before every document as context (never scored); see the module docstring."""
    with_specials = tokenizer("a", add_special_tokens=True)["input_ids"]
    without_specials = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(with_specials)):
        if with_specials[start : start + len(without_specials)] == without_specials:
            if start > 0:
                return list(with_specials[:start])
            break
    if tokenizer.eos_token_id is not None:
        return [tokenizer.eos_token_id]
    if tokenizer.bos_token_id is not None:
        return [tokenizer.bos_token_id]
    raise ValueError("the tokenizer adds no BOS and has neither an eos nor a bos token to start documents with")


def sliding_windows(sequence: Sequence[int], first_target: int, max_length: int, stride: int) -> List[Tuple[List[int], int]]:
    """Cut `sequence` into (window ids, index in the window of its first scored token).

    Tokens at positions >= `first_target` are scored, each exactly once; a window's scored tokens are
    its tail from that index on (predicted by the logits one position earlier).
    """
    windows = []
    begin, scored_until = 0, first_target
    while scored_until < len(sequence):
        end = min(begin + max_length, len(sequence))
        windows.append((list(sequence[begin:end]), scored_until - begin))
        scored_until = end
        begin += stride
    return windows


def _check_window(max_length: int, stride: int) -> None:
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    if not 0 < stride < max_length:
        raise ValueError(f"stride must be in 1..max_length-1 (got stride={stride}, max_length={max_length})")


def check_window_flags(args) -> None:
    """Fill in the default `--stride` and check `--max_length`/`--stride` before anything slow runs."""
    if args.stride is None:
        args.stride = args.max_length // 2
    try:
        _check_window(args.max_length, args.stride)
    except ValueError as error:
        raise InputError(f"--max_length/--stride: {error}") from None


@torch.inference_mode()
def sequence_nlls(model, sequences: List[Tuple[List[int], int]], batch_size: int = 4, progress: bool = False,
                  desc: str = "scoring") -> List[float]:
    """Negative log-likelihood (nats) of each (ids, first scored index) sequence's tail, in input order.

    Token `ids[i]` for i >= first scored index is scored from the logits at position i - 1, so the first
    scored index must be at least 1. Sequences are batched `batch_size` at a time.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    # Longest first: batches hold sequences of similar length, so little padding is computed.
    order = sorted(range(len(sequences)), key=lambda index: -len(sequences[index][0]))
    nlls = [0.0] * len(sequences)
    with tqdm(total=len(sequences), desc=desc, unit="seq", disable=not progress, leave=False) as bar:
        for batch_start in range(0, len(order), batch_size):
            batch_indices = order[batch_start : batch_start + batch_size]
            batch = [sequences[index] for index in batch_indices]
            longest = len(batch[0][0])
            input_ids = torch.zeros((len(batch), longest), dtype=torch.long)
            attention_mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, (ids, first_scored) in enumerate(batch):
                if first_scored < 1:
                    raise ValueError("the first scored token needs at least one token of context")
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention_mask[row, : len(ids)] = 1
            # Right padding: causal attention keeps real tokens blind to the pads after them.
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            for row, (index, (ids, first_scored)) in enumerate(zip(batch_indices, batch)):
                predicting = logits[row, first_scored - 1 : len(ids) - 1].float()
                targets = torch.tensor(ids[first_scored:], device=predicting.device)
                log_probs = torch.log_softmax(predicting, dim=-1)
                nlls[index] = -log_probs.gather(1, targets[:, None]).sum().item()
            bar.update(len(batch))
    return nlls


def bits_per_byte(
    model,
    tokenizer,
    texts: Iterable[str],
    max_length: int = 1024,
    stride: Optional[int] = None,
    batch_size: int = 4,
    progress: bool = True,
    desc: str = "bits/byte",
) -> PerplexityResult:
    """Score `texts` with `model` (eval mode, any device) and return bits per byte and token perplexity.

    Windows of at most `max_length` tokens, moved by `stride` (default `max_length // 2`), batched
    `batch_size` at a time; the document-start and window conventions are stated in the module docstring.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of strings, not one string")
    stride = max_length // 2 if stride is None else stride
    _check_window(max_length, stride)
    texts = list(texts)
    prefix = document_prefix_ids(tokenizer)
    windows: List[Tuple[List[int], int]] = []
    num_tokens = 0
    if texts:
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        for ids in encoded:
            num_tokens += len(ids)
            windows.extend(sliding_windows(prefix + list(ids), len(prefix), max_length, stride))
    nll = sum(sequence_nlls(model, windows, batch_size, progress, desc))
    num_bytes = sum(len(text.encode("utf-8")) for text in texts)
    num_characters = sum(len(text) for text in texts)
    return PerplexityResult(
        bits_per_byte=nll / (math.log(2) * num_bytes) if num_bytes else float("nan"),
        token_perplexity=math.exp(nll / num_tokens) if num_tokens else float("nan"),
        nll_nats=nll,
        num_bytes=num_bytes,
        num_characters=num_characters,
        num_tokens=num_tokens,
        num_documents=len(texts),
        num_windows=len(windows),
        characters_per_token=num_characters / num_tokens if num_tokens else float("nan"),
        max_length=max_length,
        stride=stride,
        context_tokens=tuple(tokenizer.convert_ids_to_tokens(prefix)),
    )


def read_documents(path, field: str = "target", max_documents: Optional[int] = None,
                   max_characters: Optional[int] = None) -> List[str]:
    """The `field` strings of a jsonl file: the first `max_documents` of them, each cut to its first
    `max_characters` characters, when given (a cheap, predictable subset of long documents)."""
    from colossal_lang.io.jsonl import read_texts

    texts = list(itertools.islice(read_texts(path, field=field), max_documents))
    if not texts:
        raise InputError(f"no documents with a {field!r} field", path)
    return [text[:max_characters] for text in texts] if max_characters else texts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m colossal_lang.evaluation.perplexity",
        description="Bits per byte and token perplexity of a causal LM on jsonl text, per file.",
    )
    parser.add_argument("--model_path", required=True, help="Hugging Face model folder")
    parser.add_argument("--tokenizer_path", default=None, help="tokenizer folder (default: the model's)")
    parser.add_argument("--data", nargs="+", required=True, help="jsonl files or folders of them")
    parser.add_argument("--field", default="target", help="record field holding the text (default: target)")
    parser.add_argument("--max_documents", type=int, default=None, help="score only the first N documents of each file")
    parser.add_argument("--max_characters", type=int, default=None,
                        help="cut each document to its first N characters (bounds the cost of long documents)")
    parser.add_argument("--max_length", type=int, default=1024, help="window length in tokens")
    parser.add_argument("--stride", type=int, default=None,
                        help="window step (default max_length // 2); tokens past the first window see "
                             ">= max_length - stride tokens of context")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    parser.add_argument(
        "--output_json", nargs="?", const="-", default=None, metavar="PATH",
        help="write results as JSON to PATH (no PATH: print JSON instead of the table)",
    )
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    return parser


def format_table(results: dict) -> str:
    lines = [
        "| file | documents | bytes | tokens | chars/token | bits/byte | token ppl |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        lines.append(
            f"| {name} | {result.num_documents} | {result.num_bytes} | {result.num_tokens} | "
            f"{result.characters_per_token:.3f} | {result.bits_per_byte:.4f} | {result.token_perplexity:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> dict:
    from colossal_lang.cli import parse_args_with_config, require_positive
    from colossal_lang.io.jsonl import list_jsonl_files
    from colossal_lang.io.models import load_model_and_tokenizer

    args = parse_args_with_config(build_parser(), argv)
    check_window_flags(args)
    require_positive(args, "max_documents", "max_characters", "batch_size")
    files = list_jsonl_files(args.data)
    documents = {str(path): read_documents(path, args.field, args.max_documents, args.max_characters)
                 for path in files}
    model, tokenizer = load_model_and_tokenizer(args.model_path, args.device, args.dtype, args.tokenizer_path)
    results = {
        name: bits_per_byte(model, tokenizer, texts, args.max_length, args.stride, args.batch_size,
                            progress=not args.no_progress, desc=name)
        for name, texts in documents.items()
    }
    report = {
        "model_path": str(args.model_path),
        "settings": {"max_length": args.max_length, "stride": args.stride, "max_documents": args.max_documents,
                     "max_characters": args.max_characters,
                     "dtype": str(next(model.parameters()).dtype)},
        "files": {name: result.as_dict() for name, result in results.items()},
    }
    if args.output_json == "-":
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(f"model: {args.model_path}  (window {args.max_length}, stride {args.stride}, "
              f"context tokens {' '.join(next(iter(results.values())).context_tokens)})")
        print(format_table(results))
        if args.output_json:
            with open(args.output_json, "w", encoding="utf-8") as handle:
                json.dump(report, handle, indent=2, ensure_ascii=False)
            print(f"wrote {args.output_json}", file=sys.stderr)
    return report


if __name__ == "__main__":
    run_cli(main)
