"""How good is a grown vocabulary before any training, and what does growing it cost?

On the real SmolLM2-135M expanded with a Czech byte-level BPE (trained on data/pretrain/cs and appended
by colossal_lang.tokenizer, or by plain `tokenizers` calls where that stage is absent), this measures bits per byte on held-out
Czech and English for the base model with its own tokenizer and for the expanded model initialised with
mean_of_pieces (default piece_weight), mean, random and distill (the most frequent --distill_max_tokens new
tokens fitted on data/pretrain/cs, English protected with data/pretrain/en); and the wall time and peak RSS of `init_model`
against loading the model once.

The piece_weight sweep (new row = mean + w * (mean of pieces - mean)) grows the model in process with
`expand_model`, once per weight, plus one untied copy of SmolLM2 (input rows the plain mean of pieces,
head rows pulled toward the mean). --explore adds the other row recipes that were tried (rows computed
from the plain mean of pieces and the mean row); they are not options of init_model.

    .venv/bin/python benchmarks/bench_model_init.py [--czech_vocab_size 16000] [--docs 5] [--chars 1200] [--explore]
        [--no-sweep] [--inits mean_of_pieces,distill] [--distill_max_tokens 256] [--distill_steps 8]

Prints a markdown table; --write_results also writes it to benchmarks/results_model_init.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from colossal_lang.cli import add_boolean_flag  # noqa: E402
SMOLLM2 = REPO / ".cache" / "models" / "SmolLM2-135M-Instruct"
HELDOUT = {"cs": ["cs_fortunes.jsonl", "cs_libreoffice_help.jsonl"], "en": ["en_libreoffice_help.jsonl", "en_state_of_the_union.jsonl"]}
INITS = ("mean_of_pieces", "mean", "random", "distill")
PIECE_WEIGHTS = (1.0, 0.9, 0.85, 0.8, 0.7, 0.5)


def read_targets(path: Path, limit: int) -> list:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)["target"] for line, _ in zip(handle, range(limit))]


def bits_per_byte(model, tokenizer, texts: list) -> tuple:
    """(bits per byte, tokens) with the evaluation stage's scorer: 512-token windows, stride 256."""
    from colossal_lang.evaluation.perplexity import bits_per_byte as project_bits_per_byte

    result = project_bits_per_byte(model, tokenizer, texts, max_length=512, stride=256, batch_size=4, progress=False)
    return result.bits_per_byte, result.num_tokens


def mass_on_new_rows(model, tokenizer, texts: list, first_new_id: int) -> float:
    """Mean probability the model puts on the new tokens (ids first_new_id..len(tokenizer)-1) at every position
    of `texts`: on text that keeps its old tokenization it is the whole of the loss the new rows add (-log(1 - mass))."""
    masses = []
    with torch.no_grad():
        for text in texts:
            logits = model(tokenizer(text, return_tensors="pt").input_ids[:, :512]).logits[0].float()
            masses.append(logits.softmax(-1)[:, first_new_id : len(tokenizer)].sum(-1))
    return float(torch.cat(masses).mean())


def build_czech_tokenizer(workdir: Path, czech_vocab_size: int) -> tuple:
    """The tokenizer stage's pipeline: train a Czech byte-level BPE, expand SmolLM2 protecting English.
    Returns (folder, how)."""
    from colossal_lang.tokenizer import init_tokenizer, train_tokenizer

    output = workdir / "tokenizer-cs"
    trained = workdir / "trained-cs"
    train_tokenizer.main(["--data_input_dirs", "data/pretrain/cs", "--model_type", "byte_level_bpe",
                          "--base_tokenizer_dir", str(SMOLLM2), "--vocab_size", str(czech_vocab_size), "--output_dir", str(trained)])
    init_tokenizer.main(["--source_tokenizer_dir", str(SMOLLM2), "--target_tokenizer_dir", str(output),
                         "--expand_from_tokenizer", str(trained), "--reference_text", "data/pretrain/en"])
    return output, (f"colossal_lang.tokenizer: a {czech_vocab_size}-token Czech byte-level BPE trained on data/pretrain/cs, "
                    "appended to SmolLM2's tokenizer with pieces that would change data/pretrain/en's tokenization left out")


def mean_final_hidden(model, tokenizer, texts: list) -> torch.Tensor:
    """Mean of the last (normed) hidden state, the vector the head multiplies, over the tokens of `texts`."""
    states = []
    with torch.no_grad():
        for text in texts:
            output = model(tokenizer(text, return_tensors="pt").input_ids, output_hidden_states=True)
            states.append(output.hidden_states[-1][0])
    return torch.cat(states).mean(0)


def explored_rows(pieces: torch.Tensor, mean_row: torch.Tensor, typical_norm: float, english_direction: torch.Tensor) -> dict:
    """Row recipes tried besides piece_weight, from the plain mean-of-pieces rows and the mean row."""
    mean_unit = mean_row / mean_row.norm()
    unit = english_direction / english_direction.norm()
    return {
        "pieces - 0.25 x mean row": pieces - 0.25 * mean_row,
        "pieces - 0.5 x mean row": pieces - 0.5 * mean_row,
        "pieces, half the component along the mean row removed": pieces - 0.5 * (pieces @ mean_unit).unsqueeze(1) * mean_unit,
        "pieces - 0.5 x unit mean English hidden state (needs English text)": pieces - 0.5 * unit,
        "pieces - 1.0 x unit mean English hidden state (needs English text)": pieces - 1.0 * unit,
        "pieces scaled to the typical row norm": pieces * (typical_norm / pieces.norm(dim=1, keepdim=True)),
        "0.7 x pieces + 0.4 x mean row": 0.7 * pieces + 0.4 * mean_row,
    }


def sweep(base_model, base_tokenizer, expanded_tokenizer, heldout: dict, skip: float, explore: bool) -> dict:
    """Bits per byte for every piece_weight but `skip` (measured through init_model), untied, and --explore rows."""
    import copy

    from colossal_lang.model.init_model import expand_model

    score = lambda model: {lang: bits_per_byte(model, expanded_tokenizer, texts) for lang, texts in heldout.items()}
    rows = collections.OrderedDict()
    for weight in PIECE_WEIGHTS:
        if weight == skip:
            continue
        model = copy.deepcopy(base_model)
        report = expand_model(model, base_tokenizer, expanded_tokenizer, "mean_of_pieces", piece_weight=weight, progress=False)
        rows[f"mean_of_pieces, piece_weight {weight:g}"] = score(model)
        print(weight, rows[f"mean_of_pieces, piece_weight {weight:g}"], flush=True)
        if weight == 1.0 and explore:
            plain, new_ids = model, report.new_token_ids
        else:
            del model
    untied = copy.deepcopy(base_model)
    untied.config.tie_word_embeddings = False
    untied.lm_head.weight = torch.nn.Parameter(untied.model.embed_tokens.weight.detach().clone())
    expand_model(untied, base_tokenizer, expanded_tokenizer, "mean_of_pieces", piece_weight=skip, progress=False)
    extra = untied.lm_head.weight.numel() / 1e6
    name = f"untied copy: input rows plain mean of pieces, head rows piece_weight {skip:g} (a separate head: +{extra:.0f}M parameters)"
    rows[name] = score(untied)
    print("untied", rows[name], flush=True)
    del untied
    if explore:
        source = base_model.model.embed_tokens.weight.detach().float()
        english = [text for name in ("libreoffice_help.jsonl", "moby_dick.jsonl") for text in read_targets(REPO / "data/pretrain/en" / name, 10)][:12]
        direction = mean_final_hidden(base_model, base_tokenizer, [text[:1500] for text in english])
        weight = plain.model.embed_tokens.weight.data
        pieces = weight[new_ids].clone()
        for name, new_rows in explored_rows(pieces, source.mean(0), float(source.norm(dim=1).mean()), direction).items():
            weight[new_ids] = new_rows.to(weight.dtype)
            rows[f"explored: {name}"] = score(plain)
            print(name, rows[f"explored: {name}"], flush=True)
    return rows


def peak_rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def child_measure(kind: str, target_tokenizer: str, output: str, init: str, distill: str) -> None:
    """Run in a fresh process: time one load or one init_model and report its own peak RSS (JSON on stdout).

    Peak RSS is VmHWM from /proc (getrusage's ru_maxrss can carry the parent's peak across fork + exec).
    """
    import transformers  # noqa: F401  imported before the baseline so both rows pay it equally

    from colossal_lang.model.init_model import init_model

    baseline = peak_rss_kib()
    started = time.perf_counter()
    if kind == "load":
        model = transformers.AutoModelForCausalLM.from_pretrained(SMOLLM2, torch_dtype="auto", low_cpu_mem_usage=True)
        sum(float(p.sum()) for p in model.parameters())  # safetensors maps lazily: touch every weight once
    else:
        from colossal_lang.model.distill_rows import DistillSettings

        settings = DistillSettings(**json.loads(distill))
        report = init_model(SMOLLM2, target_tokenizer, output, init=init, progress=False, distill_text=["data/pretrain/cs"],
                            distill_reference_text=["data/pretrain/en"], distill_settings=settings)
        if report.distill is not None:
            from colossal_lang.model.init_model import describe_distillation

            print(describe_distillation(report.distill), file=sys.stderr)
    seconds = time.perf_counter() - started
    peak = peak_rss_kib()
    print(json.dumps({"seconds": seconds, "peak_mib": peak / 1024, "above_baseline_mib": (peak - baseline) / 1024}))


def measure(kind: str, target_tokenizer="", output="", init="", distill="{}") -> dict:
    command = [sys.executable, __file__, "--child", kind, target_tokenizer, output, init, distill]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    if result.stderr.strip():
        print(result.stderr.strip().splitlines()[-1], flush=True)  # the distillation summary
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--czech_vocab_size", type=int, default=16000)
    parser.add_argument("--docs", type=int, default=5, help="held-out documents per file")
    parser.add_argument("--chars", type=int, default=1200, help="characters kept per document")
    parser.add_argument("--write_results", action="store_true")
    parser.add_argument("--explore", action="store_true", help="also measure the row recipes that were tried and not adopted")
    parser.add_argument("--inits", default=",".join(INITS), help="init_model rows to measure (comma-separated)")
    add_boolean_flag(parser, "sweep", True, "measure the piece_weight sweep and the untied copy")
    parser.add_argument("--distill_max_tokens", type=int, default=256, help="distil the most frequent new tokens only (CPU time)")
    parser.add_argument("--distill_steps", type=int, default=8)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_measure(*args.child)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from colossal_lang.model.import_smollm2 import import_smollm2
    from colossal_lang.model.new_token_rows import PIECE_WEIGHT

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    import_smollm2(SMOLLM2)
    workdir = Path(tempfile.mkdtemp(prefix="bench-model-init-"))
    os.chdir(REPO)
    tokenizer_dir, how = build_czech_tokenizer(workdir, args.czech_vocab_size)
    added = len(AutoTokenizer.from_pretrained(tokenizer_dir)) - len(AutoTokenizer.from_pretrained(SMOLLM2))
    heldout = {
        language: [text[: args.chars] for name in files for text in read_targets(REPO / "data/heldout" / name, args.docs)]
        for language, files in HELDOUT.items()
    }
    print(f"expanded tokenizer: +{added} tokens; held-out bytes: " + ", ".join(f"{k} {sum(len(t.encode()) for t in v)}" for k, v in heldout.items()), flush=True)

    rows = collections.OrderedDict()
    load = measure("load")
    base_tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)
    model = AutoModelForCausalLM.from_pretrained(SMOLLM2).eval()
    rows["base (own tokenizer)"] = {lang: bits_per_byte(model, base_tokenizer, texts) for lang, texts in heldout.items()}
    print("base", rows["base (own tokenizer)"], flush=True)
    base_model = model
    costs, leaks = {}, {}
    expanded_tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    distill = {"max_tokens": args.distill_max_tokens, "steps": args.distill_steps}
    for init in args.inits.split(","):
        output = workdir / f"model-{init}"
        costs[init] = measure("init", str(tokenizer_dir), str(output), init, json.dumps(distill))
        model = AutoModelForCausalLM.from_pretrained(output).eval()
        name = f"expanded, {init}" + (f" (default piece_weight {PIECE_WEIGHT:g})" if init == "mean_of_pieces" else "")
        if init == "distill":
            name += f" ({args.distill_max_tokens} most frequent new tokens, {args.distill_steps} steps; the rest mean_of_pieces)"
        rows[name] = {lang: bits_per_byte(model, expanded_tokenizer, texts) for lang, texts in heldout.items()}
        leaks[init] = mass_on_new_rows(model, expanded_tokenizer, heldout["en"], len(base_tokenizer))
        print(init, rows[name], costs[init], f"English mass on new rows {leaks[init]:.4f}", flush=True)
        del model
    swept = sweep(base_model, base_tokenizer, expanded_tokenizer, heldout, PIECE_WEIGHT, args.explore) if args.sweep else {}
    del base_model

    base = rows["base (own tokenizer)"]
    model_mib = sum(f.stat().st_size for f in SMOLLM2.glob("*.safetensors")) / 2**20
    lines = [
        f"## Model initialisation: SmolLM2-135M + {added} Czech tokens, before any training",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, {os.cpu_count()} CPU cores "
        f"(shared with other jobs: load average {os.getloadavg()[0]:.1f}, so wall times are upper bounds), torch {torch.__version__}; held-out: first {args.docs} documents of each file in data/heldout, "
        f"first {args.chars} characters each. Expanded tokenizer: {how}. Bits per byte: "
        "colossal_lang.evaluation.perplexity (512-token windows, stride 256).",
        "",
        "| model | cs bits/byte | cs tokens | cs vs base | en bits/byte | en tokens | en vs base |",
        "|---|---|---|---|---|---|---|",
    ]
    def table_rows(measured: dict) -> list:
        return [
            f"| {name} | {result['cs'][0]:.3f} | {result['cs'][1]} | {result['cs'][0] / base['cs'][0]:.3f} | "
            f"{result['en'][0]:.3f} | {result['en'][1]} | {result['en'][0] / base['en'][0]:.3f} |"
            for name, result in measured.items()
        ]

    lines += table_rows(rows)
    lines += [] if not swept else [
        "",
        f"Sweep: new rows = mean row + piece_weight x (mean of pieces - mean row), grown in process with expand_model "
        f"(piece_weight {PIECE_WEIGHT:g}, the default, is the init_model row above). Tied unless the row says otherwise.",
        "",
        "| model | cs bits/byte | cs tokens | cs vs base | en bits/byte | en tokens | en vs base |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += table_rows(swept)
    lines += [
        "",
        "Probability the expanded model puts on the new tokens at the English held-out positions (mean over positions;",
        "where a text keeps its old tokenization, the bits it adds there are -log2(1 - mass) per token):",
        "",
        "| init | English mass on new rows |",
        "|---|---|",
    ] + [f"| {init} | {mass:.4f} |" for init, mass in leaks.items()]
    lines += [
        "",
        f"| step | wall s | vs load | peak RSS MiB | above import MiB | vs model size ({model_mib:.0f} MiB) |",
        "|---|---|---|---|---|---|",
        f"| load model once (and touch every weight) | {load['seconds']:.2f} | 1.00 | {load['peak_mib']:.0f} | {load['above_baseline_mib']:.0f} | {load['above_baseline_mib'] / model_mib:.2f} |",
    ]
    for init, cost in costs.items():
        lines.append(
            f"| init_model --init {init} (load, grow, save) | {cost['seconds']:.2f} | {cost['seconds'] / load['seconds']:.2f} | "
            f"{cost['peak_mib']:.0f} | {cost['above_baseline_mib']:.0f} | {cost['above_baseline_mib'] / model_mib:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    shutil.rmtree(workdir, ignore_errors=True)
    if args.write_results:
        (REPO / "benchmarks" / "results_model_init.md").write_text("# Benchmark results: model initialisation\n\n" + table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
