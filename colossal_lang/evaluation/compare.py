"""Compare models (base vs adapted) on the same text: one markdown table, a bar chart, training curves.

    python -m colossal_lang.evaluation.compare --model base=PATH --model adapted=PATH \
        --data data/heldout --mc data/eval/cs_translate_mc.jsonl --tensorboard_dir runs/tb --output_dir outputs/eval

Writes `report.md` (the table, settings and the charts), `comparison.json` (the same rows),
`comparison.png` (bits per byte per file and multiple-choice accuracy per model) and, with
`--tensorboard_dir` or `--loss_log` (train.py's jsonl), `training_curves.png`.
Per file the table gives bits per byte (lower is better, comparable across tokenizers) and the
characters per token of each model's tokenizer (higher means fewer tokens for the same text).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from colossal_lang.errors import InputError, run_cli

BITS_PER_BYTE = "bits/byte"
CHARS_PER_TOKEN = "chars/token"
MC_ACCURACY = "MC accuracy"
MC_ACCURACY_NORM = "MC accuracy (per byte)"
MC_ACCURACY_CALIBRATED = "MC accuracy (calibrated)"


def parse_model_spec(spec: str):
    """"name=PATH" as (name, path); a bare PATH is named after its folder."""
    name, separator, path = spec.partition("=")
    if not separator:
        return Path(spec).name, spec
    if not name or not path:
        raise InputError(f"--model must look like NAME=PATH, got {spec!r}")
    return name, path


def compare_models(
    models: Dict[str, str],
    data_files: Sequence,
    mc_files: Sequence = (),
    max_documents: Optional[int] = None,
    max_characters: Optional[int] = None,
    max_length: int = 1024,
    stride: Optional[int] = None,
    batch_size: int = 4,
    mc_method: str = "loglik",
    mc_fewshot_items: Sequence = (),
    max_questions: Optional[int] = None,
    device: Optional[str] = None,
    dtype: str = "auto",
    progress: bool = True,
) -> List[dict]:
    """Evaluate each model (loaded one at a time) and return the table rows.

    Each row: {"metric", "dataset", "values": {model name: value}, "stderr": {model name: value} or None}.
    """
    from colossal_lang.io.hf_folders import check_model_folder
    from colossal_lang.io.models import CHECKPOINT_HINT, load_model_and_tokenizer
    from colossal_lang.evaluation.multiple_choice import evaluate_multiple_choice, read_multiple_choice
    from colossal_lang.evaluation.perplexity import bits_per_byte, read_documents

    for path in models.values():
        check_model_folder(path, hint=CHECKPOINT_HINT)
    # Read and validate all inputs before the first (slow) model is loaded.
    documents = _read_by_stem(data_files, lambda path: read_documents(path, max_documents=max_documents,
                                                                       max_characters=max_characters))
    questions = _read_by_stem(mc_files, lambda path: read_multiple_choice(path, max_questions))
    rows = {}

    def record(metric, dataset, name, value, stderr=None):
        row = rows.setdefault((metric, dataset), {"metric": metric, "dataset": dataset, "values": {}, "stderr": None})
        row["values"][name] = value
        if stderr is not None:
            row["stderr"] = {**(row["stderr"] or {}), name: stderr}

    for name, path in models.items():
        model, tokenizer = load_model_and_tokenizer(path, device, dtype)
        for dataset, texts in documents.items():
            result = bits_per_byte(model, tokenizer, texts, max_length, stride, batch_size, progress,
                                   desc=f"{name} {dataset}")
            record(BITS_PER_BYTE, dataset, name, result.bits_per_byte)
            record(CHARS_PER_TOKEN, dataset, name, result.characters_per_token)
        for dataset, items in questions.items():
            result = evaluate_multiple_choice(model, tokenizer, items, mc_method, mc_fewshot_items,
                                              batch_size=max(batch_size, 8), progress=progress)
            record(MC_ACCURACY, dataset, name, result.accuracy, result.accuracy_stderr)
            if result.accuracy_norm is not None:
                record(MC_ACCURACY_NORM, dataset, name, result.accuracy_norm, result.accuracy_norm_stderr)
            if result.accuracy_calibrated is not None:
                record(MC_ACCURACY_CALIBRATED, dataset, name, result.accuracy_calibrated,
                       result.accuracy_calibrated_stderr)
            record("MC chance", dataset, name, result.chance)
        del model
    order = [BITS_PER_BYTE, CHARS_PER_TOKEN, MC_ACCURACY, MC_ACCURACY_NORM, MC_ACCURACY_CALIBRATED, "MC chance"]
    return sorted(rows.values(), key=lambda row: order.index(row["metric"]))


def _read_by_stem(paths: Sequence, read) -> dict:
    """{file stem: read(path)}: the table names each file by its stem, so two files may not share one."""
    by_stem = {}
    for path in paths:
        stem = Path(path).stem
        if stem in by_stem:
            raise InputError(f"another input file is also named {stem!r}; rename one (the table names files by stem)",
                             path)
        by_stem[stem] = read(path)
    return by_stem


def _format(value: float, stderr: Optional[float] = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return text if stderr is None else f"{text} ± {stderr:.4f}"


def to_markdown(rows: List[dict]) -> str:
    """The rows as one markdown table; with two or more models, a last column gives last minus first."""
    names = list(dict.fromkeys(name for row in rows for name in row["values"]))
    header = ["metric", "data", *names]
    if len(names) >= 2:
        header.append(f"{names[-1]} − {names[0]}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
    for row in rows:
        stderr = row["stderr"] or {}
        cells = [row["metric"], row["dataset"]] + [_format(row["values"].get(n), stderr.get(n)) for n in names]
        if len(names) >= 2:
            first, last = row["values"].get(names[0]), row["values"].get(names[-1])
            difference = None if first is None or last is None else last - first
            cells.append("-" if difference is None else f"{difference:+.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_comparison(rows: List[dict], output_png) -> Path:
    """Grouped bars: bits per byte per file (left) and multiple-choice accuracy with its error (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    mc_metrics = (MC_ACCURACY, MC_ACCURACY_NORM, MC_ACCURACY_CALIBRATED)
    panels = [((BITS_PER_BYTE,), "bits per byte (lower is better)"), (mc_metrics, "multiple-choice accuracy")]
    panels = [(metrics, title) for metrics, title in panels if any(row["metric"] in metrics for row in rows)]
    names = list(dict.fromkeys(name for row in rows for name in row["values"]))
    chance = {row["dataset"]: next(iter(row["values"].values())) for row in rows if row["metric"] == "MC chance"}
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.6), squeeze=False)
    for axis, (metrics, title) in zip(axes[0], panels):
        selected = [row for row in rows if row["metric"] in metrics]
        positions = np.arange(len(selected))
        width = 0.8 / len(names)
        for index, name in enumerate(names):
            values = [row["values"].get(name, np.nan) for row in selected]
            errors = [(row["stderr"] or {}).get(name, 0.0) for row in selected]
            axis.bar(positions + (index - (len(names) - 1) / 2) * width, values, width, label=name,
                     yerr=errors if metrics == mc_metrics else None, capsize=3)
        labels = [row["dataset"] for row in selected]
        if metrics == mc_metrics:
            short = {MC_ACCURACY: "summed", MC_ACCURACY_NORM: "per byte", MC_ACCURACY_CALIBRATED: "calibrated"}
            labels = [f"{row['dataset']}\n{short[row['metric']]}" for row in selected]
            for position, row in zip(positions, selected):
                if row["dataset"] in chance:
                    axis.hlines(chance[row["dataset"]], position - 0.45, position + 0.45, colors="gray",
                                linestyles="dashed", label="chance" if position == 0 else None)
        axis.set_xticks(positions, labels, rotation=20, ha="right", fontsize="small")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    output_png = Path(output_png)
    figure.savefig(output_png, dpi=110)
    plt.close(figure)
    return output_png


def read_scalars(tensorboard_dir) -> Dict[str, Dict[str, List[tuple]]]:
    """{run folder (relative): {tag: [(step, value), ...]}} for every folder holding tensorboard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = Path(tensorboard_dir)
    if not root.is_dir():
        raise InputError("no such tensorboard folder", root)
    run_dirs = sorted({path.parent for path in root.rglob("*tfevents*") if path.is_file()})
    if not run_dirs:
        raise InputError("holds no tensorboard event files", root)
    runs = {}
    for run_dir in run_dirs:
        accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0 = keep every point
        accumulator.Reload()
        scalars = {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
                   for tag in accumulator.Tags()["scalars"]}
        if scalars:
            runs[str(run_dir.relative_to(root)) if run_dir != root else "."] = scalars
    return runs


def read_loss_log(loss_log) -> Dict[str, Dict[str, List[tuple]]]:
    """train.py's `--loss_log` (one JSON object a step) in `read_scalars`'s layout, as one run "loss_log".

    Numeric fields of step records become tags; event records (skips, rollbacks) are passed over.
    """
    from colossal_lang.io.jsonl import iter_jsonl

    path = Path(loss_log)
    if not path.is_file():
        raise InputError("no such loss log", path)
    scalars: Dict[str, List[tuple]] = {}
    for _, record in iter_jsonl(path):
        if record.get("event") or not isinstance(record.get("step"), int):
            continue
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                scalars.setdefault(key, []).append((record["step"], float(value)))
    if not scalars:
        raise InputError("holds no step records with numeric values", path)
    return {"loss_log": scalars}


def plot_training_curves(tensorboard_dir, output_png) -> Dict[str, Dict[str, List[tuple]]]:
    """One panel per scalar tag (loss, learning rate, ...), one line per run; returns what was plotted."""
    runs = read_scalars(tensorboard_dir)
    plot_scalar_runs(runs, output_png)
    return runs


def plot_scalar_runs(runs: Dict[str, Dict[str, List[tuple]]], output_png) -> Path:
    """Draw `read_scalars` / `read_loss_log` output: one panel per tag, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = sorted({tag for scalars in runs.values() for tag in scalars})
    columns = min(3, len(tags))
    rows_count = math.ceil(len(tags) / columns)
    figure, axes = plt.subplots(rows_count, columns, figsize=(5 * columns, 3.4 * rows_count), squeeze=False)
    for axis, tag in zip(axes.flat, tags):
        for run, scalars in runs.items():
            if tag in scalars:
                steps, values = zip(*scalars[tag])
                axis.plot(steps, values, label=run if len(runs) > 1 else None)
        axis.set_title(tag)
        axis.set_xlabel("step")
        if len(runs) > 1:
            axis.legend(fontsize="small")
    for axis in list(axes.flat)[len(tags):]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(output_png, dpi=110)
    plt.close(figure)
    return Path(output_png)


def training_runs(tensorboard_dir=None, loss_log=None) -> Optional[Dict[str, Dict[str, List[tuple]]]]:
    """Scalars from the tensorboard folder, else from the loss log (a folder without events falls back)."""
    if tensorboard_dir:
        try:
            return read_scalars(tensorboard_dir)
        except InputError:
            if not loss_log:
                raise
    return read_loss_log(loss_log) if loss_log else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m colossal_lang.evaluation.compare",
                                     description="Compare models on held-out text and multiple-choice sets.")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                        help="a model folder to evaluate, named for the table; repeat for each model")
    parser.add_argument("--data", nargs="+", default=[], help="held-out jsonl files or folders (text in `target`)")
    parser.add_argument("--mc", nargs="+", default=[], help="multiple-choice jsonl files")
    parser.add_argument("--mc_method", choices=("loglik", "letter"), default="loglik")
    parser.add_argument("--mc_fewshot_file", default=None)
    parser.add_argument("--num_fewshot", type=int, default=None, help="default: 5 with --mc_fewshot_file, else 0")
    parser.add_argument("--max_documents", type=int, default=None, help="first N documents of each file")
    parser.add_argument("--max_characters", type=int, default=None,
                        help="cut each document to its first N characters (long speeches cost minutes on CPU)")
    parser.add_argument("--max_questions", type=int, default=None, help="first N questions of each MC file")
    parser.add_argument("--max_length", type=int, default=1024)
    parser.add_argument("--stride", type=int, default=None, help="window step (default: max_length // 2)")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--tensorboard_dir", default=None, help="training log folder: its scalars are plotted")
    parser.add_argument("--loss_log", default=None,
                        help="train.py's --loss_log jsonl: plotted when there is no usable --tensorboard_dir")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--no_progress", action="store_true")
    return parser


def main(argv: Optional[list] = None) -> List[dict]:
    from colossal_lang.cli import parse_args_with_config, require_positive
    from colossal_lang.io.jsonl import list_jsonl_files
    from colossal_lang.evaluation.multiple_choice import load_fewshot
    from colossal_lang.evaluation.perplexity import check_window_flags

    args = parse_args_with_config(build_parser(), argv)
    require_positive(args, "max_documents", "max_characters", "max_questions", "batch_size")
    check_window_flags(args)
    if not args.data and not args.mc:
        raise InputError("nothing to compare on: give --data and/or --mc")
    models = dict(parse_model_spec(spec) for spec in args.model)
    if len(models) != len(args.model):
        raise InputError("two --model flags share a name")
    data_files = list_jsonl_files(args.data) if args.data else []
    mc_files = list_jsonl_files(args.mc) if args.mc else []
    fewshot = load_fewshot(args.mc_fewshot_file, args.num_fewshot)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    curves = training_runs(args.tensorboard_dir, args.loss_log)  # cheap: a bad log fails before the slow part
    if curves:
        plot_scalar_runs(curves, output_dir / "training_curves.png")
    rows = compare_models(
        models, data_files, mc_files, max_documents=args.max_documents, max_characters=args.max_characters,
        max_length=args.max_length, stride=args.stride, batch_size=args.batch_size, mc_method=args.mc_method,
        mc_fewshot_items=fewshot, max_questions=args.max_questions, device=args.device, dtype=args.dtype,
        progress=not args.no_progress,
    )
    table = to_markdown(rows)
    settings = (f"window {args.max_length} tokens, stride {args.stride}; documents per file: "
                f"{args.max_documents or 'all'}, characters per document: {args.max_characters or 'all'}; "
                f"MC: {args.mc_method}, {len(fewshot)}-shot, questions: {args.max_questions or 'all'}")
    images = "![bits per byte and multiple-choice accuracy](comparison.png)\n"
    if curves:
        images += "\n![training curves](training_curves.png)\n"
    report = f"# Evaluation: {', '.join(models)}\n\n{table}\n\n{settings}\n\n{images}"
    (output_dir / "report.md").write_text(report, encoding="utf-8")
    (output_dir / "comparison.json").write_text(json.dumps({"models": models, "rows": rows}, indent=2,
                                                           ensure_ascii=False), encoding="utf-8")
    plot_comparison(rows, output_dir / "comparison.png")
    print(table)
    print(settings)
    print(f"wrote {output_dir}/report.md, comparison.json, comparison.png" + (", training_curves.png" if curves else ""))
    return rows


if __name__ == "__main__":
    run_cli(main)
