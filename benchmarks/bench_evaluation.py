"""SmolLM2-135M-Instruct on the held-out text and the pick-the-translation set, with references in the same run.

Bits per byte on held-out Czech and English on a subset (the first documents of each file, the long
speeches cut to their first characters): a few minutes on 2 idle CPU cores, 15 minutes measured while
the cores were shared. References in the same run: the Czech / English bits-per-byte ratio, and
multiple-choice accuracy against chance (0.25).
Writes benchmarks/results_evaluation.md.

    .venv/bin/python benchmarks/bench_evaluation.py [--model_path PATH] [--device cpu]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from colossal_lang.io.models import load_model_and_tokenizer  # noqa: E402
from colossal_lang.evaluation.multiple_choice import evaluate_multiple_choice, read_multiple_choice  # noqa: E402
from colossal_lang.evaluation.perplexity import bits_per_byte, read_documents  # noqa: E402

HELDOUT = REPO_ROOT / "data" / "heldout"
EVAL = REPO_ROOT / "data" / "eval"
# (file, documents taken from the start, characters kept of each document or None for all)
SUBSETS = [
    ("cs_fortunes.jsonl", 40, None),
    ("cs_libreoffice_help.jsonl", 8, 1500),
    ("en_libreoffice_help.jsonl", 8, 1500),
    ("en_state_of_the_union.jsonl", 2, 4000),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_path", default=str(REPO_ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mc_questions", type=int, default=100, help="first N questions of the 180 (all: 180)")
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "results_evaluation.md"))
    args = parser.parse_args()
    if not Path(args.model_path).is_dir():  # the suite's fixture imports SmolLM2 on first use
        from colossal_lang.model.import_smollm2 import import_smollm2

        import_smollm2(Path(args.model_path))
    model, tokenizer = load_model_and_tokenizer(args.model_path, args.device, "float32")

    bpb_rows = []
    for name, count, chars in SUBSETS:
        texts = [text[:chars] if chars else text for text in read_documents(HELDOUT / name, max_documents=count)]
        started = time.perf_counter()
        result = bits_per_byte(model, tokenizer, texts, max_length=1024, stride=512, batch_size=4, desc=name)
        seconds = time.perf_counter() - started
        bpb_rows.append((name, count, chars, result, seconds))
        print(f"{name}: {result.bits_per_byte:.4f} bits/byte ({seconds:.0f} s)", flush=True)

    questions = read_multiple_choice(EVAL / "cs_translate_mc.jsonl", max_questions=args.mc_questions)
    mc_runs = []
    for label, method in [("loglik, 0-shot", "loglik"), ("letter (MMLU style), 0-shot", "letter")]:
        started = time.perf_counter()
        result = evaluate_multiple_choice(model, tokenizer, questions, method, batch_size=8)
        mc_runs.append((label, result, time.perf_counter() - started))
        print(f"MC {label}: {result.accuracy:.4f} ± {result.accuracy_stderr:.4f}", flush=True)

    report = render(args, bpb_rows, mc_runs)
    Path(args.output).write_text(report, encoding="utf-8")
    print(report)


def mean_bpb(rows, prefix):
    """Byte-weighted bits per byte over the files of one language."""
    selected = [result for name, _, _, result, _ in rows if name.startswith(prefix)]
    return sum(r.nll_nats for r in selected) / (sum(r.num_bytes for r in selected) * 0.6931471805599453)


def render(args, bpb_rows, mc_runs) -> str:
    import torch

    czech, english = mean_bpb(bpb_rows, "cs_"), mean_bpb(bpb_rows, "en_")
    lines = [
        "# Evaluation benchmark: SmolLM2-135M-Instruct",
        "",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with `benchmarks/bench_evaluation.py` on "
        f"{platform.machine()} CPU, {os.cpu_count()} cores shared with other jobs (times are indicative only), "
        f"torch {torch.__version__}, float32, device {args.device}.",
        "Window 1024 tokens, stride 512 (tokens past the first window see >= 512 tokens of context); "
        "the eos token `<|im_end|>` is the context of each document's first token.",
        "",
        "## Bits per byte on held-out text",
        "",
        "| file | documents | chars kept | bytes | tokens | chars/token | bits/byte | token ppl | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, count, chars, result, seconds in bpb_rows:
        lines.append(
            f"| {name} | first {count} | {chars or 'all'} | {result.num_bytes} | {result.num_tokens} | "
            f"{result.characters_per_token:.2f} | {result.bits_per_byte:.4f} | {result.token_perplexity:.2f} | {seconds:.0f} |"
        )
    lines += [
        "",
        f"Reference in the same run: Czech {czech:.4f} vs English {english:.4f} bits/byte (byte-weighted over the "
        f"files of each language): **Czech / English = {czech / english:.2f}**. The base model spends "
        f"{czech / english:.1f}x as many bits per byte on Czech; continual pre-training should shrink this ratio "
        "without raising the English number.",
        "",
        "## Pick-the-Czech-translation (data/eval/cs_translate_mc.jsonl)",
        "",
        "| scoring | questions | accuracy (summed) | per-byte normalised | calibrated | chance | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, result, seconds in mc_runs:
        norm = "-" if result.accuracy_norm is None else f"{result.accuracy_norm:.4f} ± {result.accuracy_norm_stderr:.4f}"
        calibrated = ("-" if result.accuracy_calibrated is None
                      else f"{result.accuracy_calibrated:.4f} ± {result.accuracy_calibrated_stderr:.4f}")
        lines.append(f"| {label} | {result.num_questions} | {result.accuracy:.4f} ± {result.accuracy_stderr:.4f} | "
                     f"{norm} | {calibrated} | {result.chance:.2f} | {seconds:.0f} |")
    lines += ["", "Reference: chance is 0.25. Distance from chance in standard errors: " + "; ".join(
        f"{label} {name} {(value - 0.25) / max(error, 1e-9):+.1f}"
        for label, result, _ in mc_runs
        for name, value, error in [("summed", result.accuracy, result.accuracy_stderr),
                                   ("per byte", result.accuracy_norm, result.accuracy_norm_stderr),
                                   ("calibrated", result.accuracy_calibrated, result.accuracy_calibrated_stderr)]
        if value is not None) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
